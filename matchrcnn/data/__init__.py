"""Reading, validating, generating and cataloguing clothing datasets."""
