"""People: faces grouped by who they are, kept incrementally, with the user's names and corrections on top.

Grouping runs after each face pass, over the faces that have no person yet:

1. **Join.** A face whose nearest face of an existing person is within ``JOIN_DISTANCE`` joins that
   person (as Immich's facial-recognition job does: the nearest face with a person within its max
   distance), unless the user took it out of that person before. A named person whose photos all left the
   library still attracts faces by the centroid of the faces it had.
2. **Cluster.** The faces left are clustered among themselves with Chinese whispers (dlib's
   ``face_clustering.py`` example) on the graph of pairs closer than ``LINK_DISTANCE``; a cluster of at least
   ``MIN_FACES`` faces becomes a new person. Smaller ones wait for more photos.

Faces that have a person are never moved by the machine, so a re-index never renames, renumbers or splits
anyone, and what the user did (names, merges, faces moved out, hidden people) is never undone. The
distances are Euclidean in dlib's 128-d face space; the thresholds are measured in ``bench/bench_faces.py``
on the shared deepface pairs (see README, People).
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable

import numpy as np

from .catalog import Catalog
from .errors import QueryError

JOIN_DISTANCE = 0.6
LINK_DISTANCE = 0.6
MIN_FACES = 2
MAX_NAME = 80


def fold_name(name: str) -> str:
    """Case- and accent-folded: "Zoë" and "zoe" are one name; inner spaces collapse."""
    text = unicodedata.normalize("NFKD", name.replace("’", "'"))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(text.split())


def clean_name(name: str) -> str:
    """A name as the user means it: trimmed, one line, not empty, not absurdly long."""
    text = " ".join(str(name).split())
    if not text:
        raise QueryError("a person's name cannot be empty")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise QueryError("a person's name cannot contain control characters")
    if len(text) > MAX_NAME:
        raise QueryError(f"a person's name can have at most {MAX_NAME} characters")
    return text


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def nearest(a: np.ndarray, b: np.ndarray, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: index of and distance to its nearest row of ``b`` (blocked: bounded memory)."""
    idx = np.zeros(len(a), np.int64)
    dist = np.full(len(a), np.inf, np.float32)
    if not len(b):
        return idx, dist
    for s in range(0, len(a), block):
        d = _sq_dists(a[s : s + block], b)
        j = d.argmin(1)
        idx[s : s + block] = j
        dist[s : s + block] = np.sqrt(d[np.arange(len(j)), j])
    return idx, dist


def chinese_whispers(vectors: np.ndarray, threshold: float, seed: int = 0, sweeps: int = 50) -> np.ndarray:
    """Cluster labels (0..k-1, by first appearance) for ``vectors``: the graph joins pairs closer than
    ``threshold`` (and every node to itself); each node in turn takes the label most common among its
    neighbours, until no label changes (dlib's chinese_whispers, with a fixed seed: deterministic)."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0, np.int64)
    neighbours: list[np.ndarray] = []
    t2 = threshold * threshold
    for s in range(0, n, 512):
        d = _sq_dists(vectors[s : s + 512], vectors)
        for row in d:
            neighbours.append(np.flatnonzero(row < t2))
    labels = np.arange(n)
    rng = random.Random(seed)
    order = list(range(n))
    for _ in range(sweeps):
        rng.shuffle(order)
        changed = 0
        for i in order:
            nb = neighbours[i]
            if len(nb) <= 1:
                continue
            votes = np.bincount(labels[nb])
            best = int(votes.argmax())  # ties: the lowest label, so groups settle on one label
            if best != labels[i] and votes[best] >= votes[labels[i]]:
                labels[i] = best
                changed += 1
        if not changed:
            break
    _, first = np.unique(labels, return_index=True)
    remap = {int(labels[i]): k for k, i in enumerate(sorted(first))}
    return np.array([remap[int(x)] for x in labels], np.int64)


def group_faces(
    catalog: Catalog,
    *,
    join_distance: float = JOIN_DISTANCE,
    link_distance: float = LINK_DISTANCE,
    min_faces: int = MIN_FACES,
) -> tuple[int, int]:
    """Put the faces without a person into people (see the module docstring). Returns (faces placed,
    people created). One transaction (reads included, so a merge or rename meanwhile waits): a crash
    leaves the people as they were."""
    with catalog.transaction():
        return _group(catalog, join_distance, link_distance, min_faces)


def _group(catalog: Catalog, join_distance: float, link_distance: float, min_faces: int) -> tuple[int, int]:
    ids_u, _, vec_u = catalog.face_vectors(assigned=False)
    if not len(ids_u):
        return 0, 0
    ids_a, person_a, vec_a = catalog.face_vectors(assigned=True)
    ghost_ids, ghost_vecs = catalog.faceless_people_centroids()
    ref_person = np.concatenate([person_a, ghost_ids])
    ref_vecs = np.concatenate([vec_a, ghost_vecs]) if len(ghost_ids) else vec_a
    rejects = catalog.face_rejects()
    joins: dict[int, list[int]] = {}
    left: list[int] = []
    if len(ref_vecs):
        rejected_faces = {f for f, _ in rejects}
        idx, dist = nearest(vec_u, ref_vecs)
        for k, fid in enumerate(ids_u.tolist()):
            pid = int(ref_person[idx[k]]) if dist[k] <= join_distance else None
            if pid is not None and fid in rejected_faces and (fid, pid) in rejects:
                pid = _nearest_allowed(vec_u[k], ref_vecs, ref_person, fid, rejects, join_distance)
            if pid is None:
                left.append(k)
            else:
                joins.setdefault(pid, []).append(fid)
    else:
        left = list(range(len(ids_u)))
    new_groups: list[list[int]] = []
    if left:
        labels = chinese_whispers(vec_u[left], link_distance)
        for lab in range(int(labels.max()) + 1 if len(labels) else 0):
            members = [int(ids_u[left[i]]) for i in np.flatnonzero(labels == lab)]
            if len(members) >= min_faces:
                new_groups.append(members)
    placed = sum(len(v) for v in joins.values()) + sum(len(g) for g in new_groups)
    if not placed:
        return 0, 0
    for pid, faces in joins.items():
        catalog.assign_faces(faces, pid)
    created = []
    for members in new_groups:
        pid = catalog.create_person()
        catalog.assign_faces(members, pid)
        created.append(pid)
    catalog.update_centroids([*joins, *created])
    return placed, len(new_groups)


def _nearest_allowed(
    v: np.ndarray, refs: np.ndarray, persons: np.ndarray, fid: int, rejects: set, limit: float
) -> int | None:
    """The nearest person within ``limit`` that the user has not taken face ``fid`` out of."""
    d = np.sqrt(_sq_dists(v[None, :], refs)[0])
    for j in np.argsort(d):
        if d[j] > limit:
            return None
        if (fid, int(persons[j])) not in rejects:
            return int(persons[j])
    return None


# -- the user's corrections ------------------------------------------------------------------------------
def require_person(catalog: Catalog, person_id: int) -> None:
    if catalog.person(person_id) is None:
        raise QueryError(f"no person with id {person_id}")


def name_person(catalog: Catalog, person_id: int, name: str | None) -> None:
    """Name or rename a person (None: forget the name). Two people may share a name (search then takes both)."""
    require_person(catalog, person_id)
    if name is None:
        catalog.set_person_name(person_id, None, None)
        return
    text = clean_name(name)
    catalog.set_person_name(person_id, text, fold_name(text))


def merge_people(catalog: Catalog, keep: int, other: int) -> None:
    if keep == other:
        raise QueryError("cannot merge a person with themselves")
    require_person(catalog, keep)
    require_person(catalog, other)
    catalog.merge_people(keep, other)


def hide_person(catalog: Catalog, person_id: int, hidden: bool = True) -> None:
    require_person(catalog, person_id)
    catalog.set_person_hidden(person_id, hidden)


def move_face(catalog: Catalog, face_id: int, person_id: int | None) -> None:
    """ "Not this person" (``person_id`` None), or "this is ``person_id``"."""
    if catalog.face(face_id) is None:
        raise QueryError(f"no face with id {face_id}")
    if person_id is not None:
        require_person(catalog, person_id)
    catalog.move_face(face_id, person_id)


def people_named(catalog: Catalog, names: Iterable[str]) -> list[list[int]]:
    """For each name, the ids of the people it names: a full name, or a first name only one name in the
    library starts with (folded). Raises QueryError for a name that names nobody (or is ambiguous)."""
    known = catalog.person_names()
    out = []
    for raw in names:
        key = fold_name(raw)
        full = [pid for pid, _, folded in known if folded == key]
        if full:
            out.append(full)
            continue
        first = {folded for _, _, folded in known if folded.split(" ")[0] == key}
        if len(first) == 1:
            out.append([pid for pid, _, folded in known if folded in first])
            continue
        if len(first) > 1:
            shown = ", ".join(sorted(n for _, n, f in known if f in first))
            raise QueryError(f"{raw!r} could be several people ({shown}): give the full name")
        raise QueryError(f"no person named {raw!r} (name people with `retllm-desktop people name`)")
    return out
