"""The input pixels as a feature map of their own, for the match network (MODEL.MATCH_HEAD.INPUT).

A backbone trained from scratch on the shape tasks (boxes, masks, landmarks) learns features that
ignore colour. On the synthetic quickstart, mean-pooled RoI features of every FPN level rank shop
items at chance, and a match head trained on them learns the training garments by heart without
ranking new ones any better; the same head on RoIAlign of the raw pixels ranks the right item in
the top 20 for about four queries in five. Garment identity is largely colour and print, so with
MODEL.MATCH_HEAD.INPUT "pixels" the match stream pools the normalised input pixels over each box
instead of FPN features. The backbone passes them along under PIXELS; the RPN and the other
streams still read the FPN levels only.
"""

PIXELS = "pixels"
"""The key of the normalised input batch (N, 3, H, W) among the backbone's feature maps."""

PIXEL_CHANNELS = 3
