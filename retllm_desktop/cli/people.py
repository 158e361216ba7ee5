"""`people`: the people found in the photos; name, merge, hide them, and take a face out of a person."""

from __future__ import annotations

import argparse

from ..errors import RetllmError
from .common import EXIT_OK, add_common_args, one_line, open_library, print_json

ACTIONS = ("list", "name", "merge", "hide", "unhide", "show", "faces", "not")
USAGE = (
    "people [--json] | people name ID NAME | people merge ID OTHER_ID | people hide ID | people unhide ID | "
    "people show ID | people faces PHOTO | people not FACE_ID"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "people",
        help="people found in your photos (2+ faces); name, merge, hide them",
        usage=f"retllm-desktop {USAGE}",
        description="Without an action: every person with two or more faces, named ones first. "
        "`name ID NAME` names or renames a person, `merge ID OTHER_ID` puts OTHER_ID's faces into ID, "
        "`hide ID` leaves a person out of the list (`unhide` brings them back), `show ID` lists their photos, "
        "`faces PHOTO` lists the faces found in a photo, `not FACE_ID` takes one face out of its person "
        "(it is never put back there).",
    )
    add_common_args(p)
    p.add_argument("action", nargs="?", default="list", choices=ACTIONS, metavar="ACTION")
    p.add_argument("args", nargs="*", metavar="ARG")
    p.add_argument("--all", action="store_true", help="also list hidden people")
    p.set_defaults(func=cmd_people)


def _ids(values: list[str], n: int, what: str) -> list[int]:
    if len(values) != n:
        raise RetllmError(f"people {what} takes {n} id{'s' if n > 1 else ''} (usage: {USAGE})")
    try:
        return [int(v) for v in values]
    except ValueError:
        raise RetllmError(f"not a person id: {' '.join(values)!r} (ids are numbers; see `people`)") from None


def cmd_people(args: argparse.Namespace) -> int:
    action, rest = args.action, list(args.args)
    with open_library(args) as lib:
        if action == "list":
            if rest:
                raise RetllmError(f"unexpected arguments: {' '.join(rest)} (usage: {USAGE})")
            return _list(lib, args)
        if action == "name":
            if len(rest) < 2:
                raise RetllmError(f"people name takes an id and a name (usage: {USAGE})")
            (pid,) = _ids(rest[:1], 1, "name")
            name = " ".join(rest[1:])
            lib.name_person(pid, name)
            done = f'person {pid} is now named "{lib.person(pid)["name"]}"'
        elif action == "merge":
            keep, other = _ids(rest, 2, "merge")
            lib.merge_people(keep, other)
            p = lib.person(keep)
            done = f"person {other} merged into person {keep}" + (f' ("{p["name"]}")' if p["name"] else "")
            done += f": {p['faces']} faces in {p['photo_count']} photos"
        elif action in ("hide", "unhide"):
            (pid,) = _ids(rest, 1, action)
            lib.hide_person(pid, action == "hide")
            done = f"person {pid} is {'hidden' if action == 'hide' else 'shown again'}"
        elif action == "show":
            (pid,) = _ids(rest, 1, "show")
            p = lib.person(pid)
            if args.json:
                print_json({"id": p["id"], "name": p["name"], "faces": p["faces"], "photos": p["photos"]})
                return EXIT_OK
            print(f"person {pid}" + (f" ({p['name']})" if p["name"] else "") + f": {p['faces']} faces")
            for path in p["photos"]:
                print(f"  {one_line(path)}")
            return EXIT_OK
        elif action == "faces":
            if len(rest) != 1:
                raise RetllmError(f"people faces takes one photo path (usage: {USAGE})")
            faces = lib.faces_in(rest[0])
            if args.json:
                print_json({"faces": faces})
                return EXIT_OK
            if not faces:
                print("no faces found in this photo (or it is not in the library)")
            for f in faces:
                who = f["person_name"] or (f"person {f['person_id']}" if f["person_id"] else "nobody yet")
                small = "" if f["recognisable"] else "  (too small to recognise)"
                x0, y0, x1, y1 = f["box"]
                print(f"face {f['id']}: {who}  at {x0:.2f},{y0:.2f}–{x1:.2f},{y1:.2f}{small}")
            return EXIT_OK
        else:  # "not": a face is not its person
            (fid,) = _ids(rest, 1, "not")
            lib.move_face(fid, None)
            done = f"face {fid} taken out of its person"
    if args.json:
        print_json({"ok": True, "message": done})
    else:
        print(done)
    return EXIT_OK


def _list(lib, args: argparse.Namespace) -> int:
    people = lib.people(include_hidden=args.all)
    if args.json:
        rows = []
        for p in people:
            row = {"id": p["id"], "name": p["name"], "faces": p["faces"], "photos": p["photos"]}
            if args.all:
                row["hidden"] = p["hidden"]
            rows.append(row)
        print_json({"people": rows})
        return EXIT_OK
    if not people:
        counts = lib.catalog.face_counts()
        if counts["pending"] or not counts["scanned"]:
            print("no people yet: run `retllm-desktop index` to find the faces in your photos")
        else:
            print("no people yet: a person appears once two or more photos show the same face")
        return EXIT_OK
    width = max(4, *(len(p["name"] or "") for p in people))
    print(f"{'ID':>5}  {'NAME':<{width}}  {'FACES':>5}  {'PHOTOS':>6}")
    for p in people:
        name = p["name"] or "(unnamed)"
        hidden = "  hidden" if p["hidden"] else ""
        print(f"{p['id']:>5}  {one_line(name):<{width}}  {p['faces']:>5}  {p['photo_count']:>6}{hidden}")
    return EXIT_OK
