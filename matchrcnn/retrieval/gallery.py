"""A shop gallery on disk: item embeddings in FAISS, everything about them in SQLite.

Directory layout::

    gallery.sqlite   the source of truth: settings, images, items (with each embedding as a
                     float32 BLOB, so the index can always be rebuilt from it)
    index.faiss      the FAISS index, ids = item rows; derived, rewritten whole after each batch
    manifest.json    a readable summary (fingerprint, embedding size, index, counts); derived
    gallery.lock     held (flock) by the one process allowed to write

Write order per batch, and why every crash point is recoverable:
1. one SQLite transaction inserts the images, their items and the updated settings. A crash before
   COMMIT leaves the database as it was (SQLite's journal); after it, the batch is durable.
2. the in-memory index takes the new vectors; 3. ``index.faiss`` is replaced atomically;
4. ``manifest.json`` is replaced atomically. Item rows only grow (AUTOINCREMENT, no deletes), so
after a crash between 1 and 3 the index file holds a prefix of the rows: opening the gallery
appends the missing items from SQLite. Anything else (missing, unreadable or foreign index file,
wrong kind or ids) is rebuilt from SQLite. Images are recorded in the same transaction as their
items, so an image is either fully indexed or not at all, and re-adding it after a crash neither
loses nor duplicates anything.

A gallery belongs to the model that built it (its fingerprint and embedding size); opening or
adding with another one fails before anything is touched.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TypeVar

import faiss
import numpy as np

from matchrcnn.retrieval.index import (
    FaissIndexError,
    IndexConfig,
    active_kind,
    describe,
    expected,
    index_ids,
    new_index,
    read_index,
    train_index,
    write_index,
)
from matchrcnn.retrieval.metric import MatchMetric
from matchrcnn.retrieval.records import GalleryItem, ShopImage
from matchrcnn.utils.atomic import write_json_atomic

FORMAT_VERSION = 1
DATABASE_FILE = "gallery.sqlite"
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "gallery.lock"
_CHUNK = 65536
"""Items read from SQLite at a time when (re)building the index."""
_TRAINING_PER_CENTROID = 256
"""Training vectors per centroid kept for IVF-PQ (FAISS samples down to this anyway)."""
_SQL_VARIABLES = 500

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    image_id INTEGER UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('indexed', 'failed')),
    error TEXT
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image INTEGER NOT NULL REFERENCES images(id),
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    category INTEGER NOT NULL,
    score REAL NOT NULL,
    pair_id INTEGER,
    style INTEGER,
    embedding BLOB NOT NULL
);
CREATE INDEX items_by_category ON items(category);
CREATE INDEX items_by_image ON items(image);
"""


class GalleryError(RuntimeError):
    """A gallery directory that cannot be used as asked; the message names it and says why."""


class GalleryMismatchError(GalleryError):
    """A gallery built by another model (fingerprint or embedding size)."""


class EmptyGalleryError(GalleryError):
    """A search in a gallery that holds no items."""


class GalleryBusyError(GalleryError):
    """Another process is writing the gallery."""


class ImageKey(Protocol):
    path: str
    image_id: int | None


K = TypeVar("K", bound=ImageKey)


@dataclass(frozen=True)
class AddResult:
    """Images and items newly indexed by one ``add_images``, and images skipped as known."""

    images: int
    items: int
    skipped: int


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as error:
        raise GalleryError(f"{path}: not a readable SQLite database: {error}") from error
    return db


def _read_meta(db: sqlite3.Connection, path: Path) -> dict[str, str]:
    try:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as error:
        raise GalleryError(f"{path}: not a gallery database ({error}); an empty one is what an "
                           f"interrupted creation leaves: create the gallery again") from error


class Gallery:
    """An open gallery directory. Use ``create``, ``open`` or ``open_or_create``; close it (or use
    ``with``) to release the write lock. Closing writes nothing."""

    def __init__(self, directory: Path, db: sqlite3.Connection, meta: dict[str, str],
                 lock: IO | None) -> None:
        self.directory = directory
        self._db = db
        self._lock = lock
        self.fingerprint = meta["fingerprint"]
        self.embed_dim = int(meta["embed_dim"])
        self.metric = MatchMetric.from_json(json.loads(meta["metric"]))
        self.index_config = IndexConfig.from_json(json.loads(meta["index_config"]))
        self.max_positive_norm = float(meta["max_positive_norm"])
        self._index: faiss.Index | None = None
        self._category_rows: dict[int, np.ndarray] = {}

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | os.PathLike, fingerprint: str, metric: MatchMetric,
               index_config: IndexConfig | None = None) -> Gallery:
        """A new empty gallery for the model of ``fingerprint`` whose similarity is ``metric``."""
        directory = Path(directory)
        index_config = index_config or IndexConfig()
        index_config.check_dim(metric.dim)
        database = directory / DATABASE_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise GalleryError(f"gallery {directory}: cannot create the directory "
                               f"({error.strerror})") from error
        lock = acquire_lock(directory)
        if database.exists() and _has_tables(database):
            lock.close()
            raise GalleryError(f"{directory} already holds a gallery ({database}): open it to "
                               f"add images, or choose another directory")
        db = _connect(database)
        meta = {"format": str(FORMAT_VERSION), "fingerprint": fingerprint,
                "embed_dim": str(metric.dim), "metric": json.dumps(metric.to_json()),
                "index_config": json.dumps(index_config.to_json()),
                "max_positive_norm": repr(0.0)}
        try:
            db.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
            lock.close()
            raise
        gallery = cls(directory, db, meta, lock)
        try:
            gallery._index = new_index(index_config, metric.dim, active_kind(index_config, 0))
            gallery._save_index()
            gallery._save_manifest()
        except BaseException:
            gallery.close()  # committed: the next open rebuilds what is missing
            raise
        return gallery

    @classmethod
    def open(cls, directory: str | os.PathLike, fingerprint: str | None = None,
             embed_dim: int | None = None, writable: bool = False) -> Gallery:
        """An existing gallery, checked against the model that will use it (when given).

        A mismatch raises GalleryMismatchError before anything is read beyond the settings or
        written. Then the index is brought in line with the database (see the module notes); a
        read-only gallery repairs only its in-memory index.
        """
        directory = Path(directory)
        database = directory / DATABASE_FILE
        if not database.is_file():
            raise GalleryError(f"{directory} holds no gallery ({DATABASE_FILE} is missing): "
                               f"build one with tools/build_gallery.py")
        db = _connect(database)
        try:
            meta = _read_meta(db, database)
            _check_meta(meta, directory, fingerprint, embed_dim)
            lock = acquire_lock(directory) if writable else None
        except BaseException:
            db.close()
            raise
        gallery = cls(directory, db, meta, lock)
        try:
            if writable:
                _remove_stale_temporaries(directory)
            gallery._sync_index()
            if writable and _read_json(directory / MANIFEST_FILE) != gallery._manifest():
                gallery._save_manifest()
        except BaseException:
            gallery.close()
            raise
        return gallery

    @classmethod
    def open_or_create(cls, directory: str | os.PathLike, fingerprint: str, metric: MatchMetric,
                       index_config: IndexConfig | None = None) -> Gallery:
        """For building: the gallery of this model in ``directory``, made if there is none.

        An existing gallery keeps its index settings unless ``index_config`` differs, in which
        case the index is rebuilt to it.
        """
        database = Path(directory) / DATABASE_FILE
        if not database.is_file() or not _has_tables(database):  # none, or creation cut short
            return cls.create(directory, fingerprint, metric, index_config)
        gallery = cls.open(directory, fingerprint, metric.dim, writable=True)
        try:
            if gallery.metric != metric:
                raise GalleryMismatchError(
                    f"gallery {directory} stores another similarity head than this model's "
                    f"although the fingerprints agree: the gallery settings are damaged")
            if index_config is not None and index_config != gallery.index_config:
                gallery.set_index_config(index_config)
        except BaseException:
            gallery.close()
            raise
        return gallery

    def require_model(self, fingerprint: str, embed_dim: int) -> None:
        """Raise GalleryMismatchError unless the model of ``fingerprint`` built this gallery."""
        _check_model(self.directory, self.fingerprint, self.embed_dim, fingerprint, embed_dim)

    def close(self) -> None:
        """Release the database and the write lock; nothing is written."""
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return self._lock is not None

    @property
    def item_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM items").fetchone()[0]

    @property
    def image_count(self) -> int:
        """Images indexed (with or without items); failed ones are not counted."""
        return self._db.execute(
            "SELECT count(*) FROM images WHERE status = 'indexed'").fetchone()[0]

    @property
    def index(self) -> faiss.Index:
        """The FAISS index, in line with the database as of opening and this object's own
        additions (items another process adds later appear after reopening)."""
        if self._index is None:
            self._sync_index()
        return self._index

    def pending(self, images: Iterable[K]) -> list[K]:
        """Those of ``images`` (anything with ``path`` and ``image_id``) not indexed yet."""
        paths, ids = set(), set()
        for path, image_id in self._db.execute(
                "SELECT path, image_id FROM images WHERE status = 'indexed'"):
            paths.add(path)
            ids.add(image_id)
        ids.discard(None)
        return [image for image in images
                if image.path not in paths and image.image_id not in ids]

    def failures(self) -> dict[str, str]:
        """Images recorded as failed (path -> reason) and not indexed since."""
        return dict(self._db.execute("SELECT path, error FROM images WHERE status = 'failed'"))

    def items(self, rows: Sequence[int]) -> list[GalleryItem]:
        """The items of ``rows``, in that order; an unknown row raises GalleryError."""
        found: dict[int, GalleryItem] = {}
        for chunk in _chunks(rows):
            query = (
                "SELECT items.id, images.path, images.image_id, x1, y1, x2, y2, category, score, "
                "pair_id, style FROM items JOIN images ON images.id = items.image "
                f"WHERE items.id IN ({','.join('?' * len(chunk))})")
            for row, path, image_id, x1, y1, x2, y2, category, score, pair_id, style in (
                    self._db.execute(query, chunk)):
                found[row] = GalleryItem(row, path, image_id, (x1, y1, x2, y2), category, score,
                                         pair_id, style)
        return self._lookup(found, rows)

    def embeddings(self, rows: Sequence[int]) -> np.ndarray:
        """Stored embeddings (len(rows), D) float32, in the order of ``rows``."""
        found: dict[int, bytes] = {}
        for chunk in _chunks(rows):
            found.update(self._db.execute(
                f"SELECT id, embedding FROM items WHERE id IN ({','.join('?' * len(chunk))})",
                chunk))
        return self._decode(self._lookup(found, rows))

    def iter_embeddings(self, after: int = 0, chunk_size: int = _CHUNK
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows, embeddings) of the items after row ``after``, in row order, in chunks."""
        cursor = self._db.execute(
            "SELECT id, embedding FROM items WHERE id > ? ORDER BY id", (int(after),))
        while chunk := cursor.fetchmany(chunk_size):
            rows, blobs = zip(*chunk, strict=True)
            yield np.asarray(rows, dtype=np.int64), self._decode(blobs)

    def category_rows(self, category: int) -> np.ndarray:
        """Rows of the items of one category (cached until the next add)."""
        if category not in self._category_rows:
            self._category_rows[category] = np.fromiter(
                (row for (row,) in self._db.execute(
                    "SELECT id FROM items WHERE category = ? ORDER BY id", (int(category),))),
                dtype=np.int64)
        return self._category_rows[category]

    # --- writing ---------------------------------------------------------------------------

    def add_images(self, images: Iterable[ShopImage]) -> AddResult:
        """Index a batch of shop images in one transaction; images already indexed (same path or
        same image id, here or earlier in the batch) are skipped, failed ones are retried."""
        self._require_writable()
        images = list(images)
        for image in images:
            if len(image) and image.embeddings.shape[1] != self.embed_dim:
                raise GalleryMismatchError(
                    f"{image.path}: its embeddings are {image.embeddings.shape[1]}-d but gallery "
                    f"{self.directory} holds {self.embed_dim}-d ones (another model built it)")
        rows, vectors, added, skipped = self._commit_batch(images)
        self._category_rows.clear()
        try:
            self._extend_index(rows, vectors)
            self._save_index()
            self._save_manifest()
        except BaseException:
            self._index = None  # resynchronised from the database on next use
            raise
        return AddResult(added, len(rows), skipped)

    def mark_failed(self, path: str, image_id: int | None, reason: str) -> None:
        """Record an image that could not be processed, so that a build can report it; a later
        ``add_images`` of the same image replaces the record. An indexed image is left alone."""
        self._require_writable()
        image_id = None if image_id is None else int(image_id)
        with self._transaction():
            known = self._known_image(path, image_id)
            if known is None:
                self._db.execute("INSERT INTO images (path, image_id, status, error) "
                                 "VALUES (?, ?, 'failed', ?)", (path, image_id, reason))
            elif known[1] == "failed":
                self._db.execute("UPDATE images SET error = ? WHERE id = ?", (reason, known[0]))
        self._save_manifest()

    def set_index_config(self, config: IndexConfig) -> None:
        """Switch the index kind or settings; the index is rebuilt from the database if its
        shape changes (a crash in between is repaired on the next open)."""
        self._require_writable()
        config.check_dim(self.embed_dim)
        with self._transaction():
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'index_config'",
                             (json.dumps(config.to_json()),))
        self.index_config = config
        if describe(self.index) != expected(config, self.embed_dim, self.item_count):
            self._index = self._build_index()
            self._save_index()
        self._save_manifest()

    # --- write steps (each one a point a crash may interrupt) --------------------------------

    def _commit_batch(self, images: list[ShopImage]) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Step 1: images, items and settings in one transaction; the new rows and vectors."""
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        added = skipped = 0
        seen_paths: set[str] = set()
        seen_ids: set[int] = set()
        with self._transaction():
            for image in images:
                known = self._known_image(image.path, image.image_id)
                repeated = image.path in seen_paths or image.image_id in seen_ids
                if repeated or (known is not None and known[1] == "indexed"):
                    skipped += 1
                    continue
                seen_paths.add(image.path)
                if image.image_id is not None:
                    seen_ids.add(image.image_id)
                image_row = self._insert_image(image, known)
                rows += self._insert_items(image, image_row)
                if len(image):
                    vectors.append(image.embeddings)
                added += 1
            stacked = (np.concatenate(vectors) if vectors
                       else np.zeros((0, self.embed_dim), np.float32))
            if len(stacked):
                bound = max(self.max_positive_norm,
                            float(self.metric.positive_norms(stacked).max()))
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'max_positive_norm'",
                                 (repr(bound),))
        if len(stacked):
            self.max_positive_norm = bound
        return np.asarray(rows, dtype=np.int64), stacked, added, skipped

    def _extend_index(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Step 2: the new items into the in-memory index (retrained when IVF-PQ is due)."""
        if self._index is None:
            self._sync_index()  # reads every committed item, these included
        elif len(rows):
            self._index.add_with_ids(self.metric.index_vectors(vectors), rows)
        if describe(self.index) != expected(self.index_config, self.embed_dim, self.item_count):
            self._index = self._build_index()

    def _save_index(self) -> None:
        """Step 3: the index file, replaced atomically."""
        write_index(self._index, self.directory / INDEX_FILE)

    def _save_manifest(self) -> None:
        """Step 4: the readable summary, replaced atomically."""
        write_json_atomic(self.directory / MANIFEST_FILE, self._manifest())

    # --- internals ---------------------------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.writable:
            raise GalleryError(f"gallery {self.directory} was opened read-only: open it with "
                               f"writable=True to add images")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _known_image(self, path: str, image_id: int | None) -> tuple[int, str] | None:
        """(row, status) of the image with this path or image id; None when there is none."""
        found = self._db.execute(
            "SELECT id, status, path, image_id FROM images WHERE path = ? OR image_id = ?",
            (path, image_id)).fetchall()
        if len(found) > 1:
            raise GalleryError(f"gallery {self.directory}: image {path!r} (id {image_id}) "
                               f"matches two recorded images by path and by id: "
                               f"{[(row[2], row[3]) for row in found]}")
        return (found[0][0], found[0][1]) if found else None

    def _insert_image(self, image: ShopImage, known: tuple[int, str] | None) -> int:
        if known is not None:
            self._db.execute("UPDATE images SET path = ?, image_id = ?, status = 'indexed', "
                             "error = NULL WHERE id = ?", (image.path, image.image_id, known[0]))
            return known[0]
        cursor = self._db.execute(
            "INSERT INTO images (path, image_id, status) VALUES (?, ?, 'indexed')",
            (image.path, image.image_id))
        return cursor.lastrowid

    def _insert_items(self, image: ShopImage, image_row: int) -> list[int]:
        rows = []
        styles = image.styles if image.styles is not None else [None] * len(image)
        for box, category, score, embedding, style in zip(
                image.boxes.tolist(), image.categories.tolist(), image.scores.tolist(),
                image.embeddings, styles, strict=True):
            cursor = self._db.execute(
                "INSERT INTO items (image, x1, y1, x2, y2, category, score, pair_id, style, "
                "embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (image_row, *box, category, score, image.pair_id,
                 None if style is None else int(style), embedding.tobytes()))
            rows.append(cursor.lastrowid)
        return rows

    def _lookup(self, found: dict, rows: Sequence[int]) -> list:
        missing = [int(row) for row in rows if int(row) not in found]
        if missing:
            raise GalleryError(f"gallery {self.directory} has no item rows {missing[:10]}")
        return [found[int(row)] for row in rows]

    def _decode(self, blobs: Sequence[bytes]) -> np.ndarray:
        size = 4 * self.embed_dim
        bad = [len(blob) for blob in blobs if len(blob) != size]
        if bad:
            raise GalleryError(f"{self.directory / DATABASE_FILE}: stored embeddings of "
                               f"{bad[0]} bytes, expected {size} ({self.embed_dim} float32)")
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, self.embed_dim)

    def _item_rows(self) -> np.ndarray:
        return np.fromiter((row for (row,) in self._db.execute(
            "SELECT id FROM items ORDER BY id")), dtype=np.int64)

    def _training_vectors(self, count: int) -> np.ndarray:
        """An even sample of the stored vectors (index space), enough for k-means."""
        step = max(1, count // (_TRAINING_PER_CENTROID * self.index_config.min_training))
        sample = [vectors[(rows - 1) % step == 0] for rows, vectors in self.iter_embeddings()]
        return self.metric.index_vectors(np.concatenate(sample))

    def _build_index(self) -> faiss.Index:
        """A fresh index of every stored item, from the database alone."""
        count = self.item_count
        index = new_index(self.index_config, self.embed_dim, active_kind(self.index_config, count))
        if not index.is_trained:
            train_index(index, self._training_vectors(count), self.index_config)
        for rows, vectors in self.iter_embeddings():
            index.add_with_ids(self.metric.index_vectors(vectors), rows)
        return index

    def _same_vectors(self, index: faiss.Index, held: np.ndarray) -> bool:
        """Whether sampled items of an index that stores exact vectors (flat, HNSW) hold the
        database's vectors: catches an index file copied from another gallery. IVF-PQ codes are
        lossy and are not compared."""
        if describe(index)["kind"] not in ("flat", "hnsw") or not len(held):
            return True
        sample = np.unique(held[np.linspace(0, len(held) - 1, min(16, len(held))).astype(int)])
        stored = np.stack([index.reconstruct(int(row)) for row in sample])
        return np.array_equal(stored, self.metric.index_vectors(self.embeddings(sample)))

    def _sync_index(self) -> None:
        """Load the index file and make it hold exactly the committed items (module notes)."""
        path = self.directory / INDEX_FILE
        rows = self._item_rows()
        index, problem = None, None
        try:
            index = read_index(path) if path.is_file() else None
            problem = None if index is not None else "is missing"
        except FaissIndexError as error:
            problem = f"is unreadable ({error})"
        changed = False
        if index is not None:
            held = index_ids(index) if isinstance(index, faiss.IndexIDMap2) else None
            if held is None or index.d != self.embed_dim:
                problem = "is not an index of this gallery"
            elif len(held) > len(rows) or not np.array_equal(held, rows[:len(held)]):
                problem = (f"holds {len(held)} items that are not the first of the "
                           f"{len(rows)} committed ones")
            elif not self._same_vectors(index, held):
                problem = "holds other vectors than the database for the same items"
            elif len(held) < len(rows):
                logger.warning("%s: holds %d of %d items (a build stopped before saving it); "
                               "adding the missing ones", path, len(held), len(rows))
                for new_rows, vectors in self.iter_embeddings(after=held[-1] if len(held) else 0):
                    index.add_with_ids(self.metric.index_vectors(vectors), new_rows)
                changed = True
            if problem is None and describe(index) != expected(
                    self.index_config, self.embed_dim, len(rows)):
                problem = (f"is a {describe(index)} index, the settings ask for "
                           f"{expected(self.index_config, self.embed_dim, len(rows))}")
        if problem is not None:
            logger.warning("%s %s: rebuilding it from %s", path, problem, DATABASE_FILE)
            index = self._build_index()
            changed = True
        self._index = index
        if changed and self.writable:
            self._save_index()

    def _manifest(self) -> dict:
        failed = self._db.execute(
            "SELECT count(*) FROM images WHERE status = 'failed'").fetchone()[0]
        return {"format": FORMAT_VERSION, "fingerprint": self.fingerprint,
                "embed_dim": self.embed_dim, "index": self.index_config.to_json(),
                "index_kind": describe(self.index)["kind"], "similarity_signs": self.metric.signs,
                "images": self.image_count, "failed_images": failed, "items": self.item_count}


def _check_meta(meta: dict[str, str], directory: Path, fingerprint: str | None,
                embed_dim: int | None) -> None:
    missing = {"format", "fingerprint", "embed_dim", "metric", "index_config",
               "max_positive_norm"} - set(meta)
    if missing:
        raise GalleryError(f"{directory / DATABASE_FILE}: not a complete gallery database "
                           f"(settings {sorted(missing)} missing); create the gallery again")
    if meta["format"] != str(FORMAT_VERSION):
        raise GalleryError(f"gallery {directory} has format {meta['format']}; this version "
                           f"reads format {FORMAT_VERSION}: build the gallery again")
    _check_model(directory, meta["fingerprint"], int(meta["embed_dim"]), fingerprint, embed_dim)


def _check_model(directory: Path, built_by: str, built_dim: int, fingerprint: str | None,
                 embed_dim: int | None) -> None:
    if embed_dim is not None and built_dim != embed_dim:
        raise GalleryMismatchError(
            f"gallery {directory} holds {built_dim}-d embeddings but the model gives "
            f"{embed_dim}-d ones: it was built by another model; use that model or build a new "
            f"gallery in another directory")
    if fingerprint is not None and built_by != fingerprint:
        raise GalleryMismatchError(
            f"gallery {directory} was built by model {built_by[:16]}..., not by this "
            f"model ({fingerprint[:16]}...): use the model that built it or build a new gallery "
            f"in another directory")


def _has_tables(database: Path) -> bool:
    db = _connect(database)
    try:
        return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    except sqlite3.DatabaseError as error:
        raise GalleryError(f"{database}: not a readable SQLite database: {error}") from error
    finally:
        db.close()


def acquire_lock(directory: Path, shared: bool = False, hint: str = "") -> IO:
    """An empty lock file held with flock for as long as the gallery is open: exclusive to write,
    ``shared`` to read with no writer (a served gallery); ``hint`` ends the busy message."""
    try:
        handle = open(directory / LOCK_FILE, "a")  # noqa: SIM115 - held until close()
    except OSError as error:
        raise GalleryError(f"gallery {directory}: cannot open its lock file {LOCK_FILE} "
                           f"({error.strerror})") from error
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise GalleryBusyError(f"gallery {directory} is being written by another process "
                               f"(it holds {directory / LOCK_FILE}){hint}") from None
    return handle


def _remove_stale_temporaries(directory: Path) -> None:
    """Temporary files a killed writer left behind (atomic_open's ``.<name>.*.tmp``)."""
    for name in (INDEX_FILE, MANIFEST_FILE):
        for stale in directory.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _chunks(rows: Sequence[int]) -> Iterator[list[int]]:
    rows = [int(row) for row in rows]
    for start in range(0, len(rows), _SQL_VARIABLES):
        yield rows[start:start + _SQL_VARIABLES]
