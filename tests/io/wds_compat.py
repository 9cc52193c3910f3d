#!/usr/bin/env python3
"""wds_compat.py SGPS — WebDataset compatibility and CLI test for `sgps pack`
and `sgps shards`.

Builds a small ImageFolder of PPM/PGM files and a CSV in a temp folder, packs
them with the sgps binary given as argument, reads the shards back with
Python's standard `tarfile` and groups members the WebDataset way (key = path
up to the first dot of the basename, consecutive members), then checks labels,
.json metadata, the index, `shards verify` (also on a corrupted shard) and
`shards ls`, and the documented exit codes. Uses only the standard library."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(args, want_rc):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != want_rc:
        fail(f"{' '.join(args)}: exit {p.returncode}, wanted {want_rc}\n{p.stdout}\n{p.stderr}")
    return p


def wds_groups(path):
    """Samples of a shard per the WebDataset rules, in order."""
    groups = []
    if path.endswith(".zst"):
        # tarfile reads zstd only from Python 3.14: decompress with the zstd tool
        raw = subprocess.run(["zstd", "-dc", path], stdout=subprocess.PIPE, check=True).stdout
        tf_ctx = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    else:
        tf_ctx = tarfile.open(path, "r:*")
    with tf_ctx as tf:
        for m in tf:
            if not m.isfile():
                continue
            base = os.path.basename(m.name)
            if "." not in base:
                fail(f"{path}: member without extension: {m.name}")
            dirn = m.name[: len(m.name) - len(base)]
            stem, ext = base.split(".", 1)
            key = dirn + stem
            if m.mtime != 0 or m.uid != 0 or m.gid != 0:
                fail(f"{path}: {m.name}: mtime/uid/gid not fixed")
            data = tf.extractfile(m).read()
            if groups and groups[-1][0] == key:
                groups[-1][1][ext.lower()] = data
            else:
                groups.append((key, {ext.lower(): data}))
    return groups


def main():
    sgps = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="sgio-compat-")
    try:
        # ImageFolder: images/<label>/<name>.ppm|pgm
        labels = {"alpha": 5, "beta": 4, "gamma": 3}
        rows = []
        for lab, n in labels.items():
            os.makedirs(os.path.join(tmp, "src", "images", lab))
            for i in range(n):
                if i % 2:
                    body = b"P5\n3 2\n255\n" + bytes(range(i, i + 6))
                    name = f"img{i}.pgm"
                else:
                    body = b"P6\n2 2\n255\n" + bytes((i * 7 + k) % 256 for k in range(12))
                    name = f"img{i}.ppm"
                rel = f"images/{lab}/{name}"
                with open(os.path.join(tmp, "src", rel), "wb") as f:
                    f.write(body)
                rows.append((rel, lab, f"G{i // 2}-{lab}", str(40 + i)))
        with open(os.path.join(tmp, "src", "labels.csv"), "w") as f:
            f.write("path,label,group,age\n")
            for r in rows:
                f.write(",".join(r) + "\n")

        run([sgps, "pack", "--help"], 0)
        run([sgps, "shards", "--help"], 0)
        run([sgps, "pack"], 2)
        run([sgps, "pack", "--bogus", "a", "b"], 2)
        run([sgps, "pack", os.path.join(tmp, "nope.csv"), os.path.join(tmp, "o-%d.tar")], 1)
        for size in ("0", "-1M", "nan", "abc"):
            r = run([sgps, "pack", "--max-bytes", size, os.path.join(tmp, "src"), os.path.join(tmp, "nan", "n-%d.tar")], 2)
            if f"got '{size}'" not in r.stderr:
                fail(f"pack --max-bytes {size}: the bad value is not named:\n{r.stderr}")
        if os.path.exists(os.path.join(tmp, "nan")):
            fail("a refused pack wrote shards")
        # a source without images is a failed pack (1), not a usage error (2)
        os.makedirs(os.path.join(tmp, "empty", "somelabel"))
        r = run([sgps, "pack", os.path.join(tmp, "empty"), os.path.join(tmp, "e", "e-%d.tar")], 1)
        if "no images found" not in r.stderr or "empty" not in r.stderr:
            fail(f"pack of an empty folder: the folder and the reason are not named:\n{r.stderr}")

        patterns = ["csv/c-%06d.tar"]
        if shutil.which("zstd"):
            patterns.append("csv/z-%06d.tar.zst")
        for pattern in patterns:
            out = os.path.join(tmp, pattern)
            run([sgps, "pack", "--quiet", "--max-samples", "4", "--group", "group",
                 os.path.join(tmp, "src", "labels.csv"), out], 0)
            stem = out.split("%")[0]
            index = json.load(open(stem + "index.json"))
            classes = open(stem + "classes.txt").read().split()
            if classes != sorted(labels) or index["classes"] != classes:
                fail(f"class list {classes} / {index['classes']}")
            total = 0
            seen_groups = {}
            for k, sh in enumerate(index["shards"]):
                path = os.path.join(os.path.dirname(out), sh["path"])
                if hashlib.sha256(open(path, "rb").read()).hexdigest() != sh["sha256"]:
                    fail(f"{path}: sha256 differs from the index")
                if os.path.getsize(path) != sh["bytes"]:
                    fail(f"{path}: size differs from the index")
                groups = wds_groups(path)
                if len(groups) != sh["samples"]:
                    fail(f"{path}: tarfile sees {len(groups)} samples, index says {sh['samples']}")
                keys = [g[0] for g in groups]
                if len(set(keys)) != len(keys):
                    fail(f"{path}: a key appears in two groups: {keys}")
                for key, mem in groups:
                    img = [e for e in mem if e in ("ppm", "pgm")]
                    if len(img) != 1 or "cls" not in mem or "json" not in mem:
                        fail(f"{path}: sample {key} has members {sorted(mem)}")
                    meta = json.loads(mem["json"])
                    cls = int(mem["cls"])
                    if classes[cls] != meta["label"] or f"/{meta['label']}/" not in key:
                        fail(f"{path}: sample {key}: .cls {cls} vs .json {meta}")
                    src = open(os.path.join(tmp, "src", key + "." + img[0]), "rb").read()
                    if src != mem[img[0]]:
                        fail(f"{path}: sample {key}: image bytes changed")
                    g = meta["group"]
                    if seen_groups.setdefault(g, k) != k:
                        fail(f"group {g} split across shards")
                total += len(groups)
            if total != len(rows):
                fail(f"{total} samples read back, {len(rows)} packed")
            run([sgps, "shards", "verify", stem + "index.json"], 0)
            ls = run([sgps, "shards", "ls", "--decode", os.path.join(os.path.dirname(out), index["shards"][0]["path"])], 0)
            if "2x2" not in ls.stdout and "3x2" not in ls.stdout:
                fail(f"shards ls --decode printed no image size:\n{ls.stdout}")

        # ImageFolder source, gzip
        out = os.path.join(tmp, "folder", "f-%03d.tar.gz")
        run([sgps, "pack", "--quiet", os.path.join(tmp, "src"), out], 0)
        groups = wds_groups(os.path.join(tmp, "folder", "f-000.tar.gz"))
        if len(groups) != len(rows):
            fail(f"folder pack: {len(groups)} samples")

        # corrupt one shard: verify must fail with exit 1, ls must report it
        idx = os.path.join(tmp, "csv", patterns[-1].split("/")[1].split("%")[0] + "index.json")
        first = json.load(open(idx))["shards"][0]["path"]
        p = os.path.join(tmp, "csv", first)
        data = bytearray(open(p, "rb").read())
        open(p, "wb").write(bytes(data[: len(data) // 2]))
        v = run([sgps, "shards", "verify", idx], 1)
        if first not in v.stderr:
            fail(f"verify did not name the bad shard:\n{v.stderr}")
        ls = run([sgps, "shards", "ls", p], 1)
        if "stream broken" not in ls.stderr:
            fail(f"ls did not report the broken stream:\n{ls.stderr}")
        print("ok")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
