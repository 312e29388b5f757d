#!/usr/bin/python3
"""Helper for testdata/make-fixtures.sh: builds the .torrent test fixtures.

Run with /usr/bin/python3 (the Debian interpreter that has python3-libtorrent).

    make-fixtures.py content SRC       write the deterministic source content
    make-fixtures.py build SRC OUT     libtorrent torrents + hand-written bencode
    make-fixtures.py verify OUT        load every fixture with libtorrent, write
                                       OUT/info-hashes.txt, print a report

Nothing here touches the network. All content bytes come from SHA-256 of a
fixed label and counter, so every run produces identical files.
"""

import hashlib
import os
import sys

# ---------------------------------------------------------------------------
# Fixed parameters shared by all fixtures.

TRACKER_HTTP = "http://127.0.0.1:6969/announce"
TRACKER_UDP = "udp://127.0.0.1:6969/announce"
TRACKER_HTTP2 = "http://127.0.0.1:6970/announce"
WEB_SEED = "http://127.0.0.1:8080/files/"
CREATOR = "shoal testdata/make-fixtures.py"
# libtorrent always writes "creation date" = now; it is replaced with this
# fixed value (outside the info dict, so no effect on the info hash).
CREATION_DATE = 1700000000
MTIME = 1700000000

# Source tree: relative path -> (kind, length). kind "bin" = pseudo-random
# bytes, "txt" = ASCII text lines. Lengths are deliberately odd.
SOURCES = {
    # mktorrent-single.torrent (piece length 2^15 = 32768 -> 4 pieces)
    "single.bin": ("bin", 100000),
    # mktorrent-multi.torrent (piece length 2^15)
    "shoal-multi/README.txt": ("txt", 1000),
    "shoal-multi/café-ü.txt": ("txt", 4321),
    "shoal-multi/empty.dat": ("bin", 0),
    "shoal-multi/sub/data.bin": ("bin", 70000),
    "shoal-multi/sub/deeper/tiny.bin": ("bin", 7),
    # libtorrent-single.torrent (piece length 16384 -> 4 pieces)
    "lt-single.bin": ("bin", 50001),
    # libtorrent-multi-padded.torrent (piece length 16384)
    "lt-multi/alpha.bin": ("bin", 20000),
    "lt-multi/beta.bin": ("bin", 12345),
    "lt-multi/empty.dat": ("bin", 0),
    "lt-multi/résumé-ß.txt": ("txt", 777),
    "lt-multi/sub/gamma.bin": ("bin", 40000),
    "lt-multi/sub/nested/日本.bin": ("bin", 3),
    # libtorrent-hybrid.torrent (piece length 16384, v1 + v2)
    "lt-hybrid/a.bin": ("bin", 30000),
    "lt-hybrid/sub/b.bin": ("bin", 5000),
}


def content(label, kind, n):
    """Deterministic bytes for a source file."""
    out = bytearray()
    i = 0
    if kind == "txt":
        while len(out) < n:
            out += ("%s line %05d: the quick brown fox jumps over the lazy dog\n"
                    % (label, i)).encode("utf-8")
            i += 1
    else:
        while len(out) < n:
            out += hashlib.sha256(("shoal-fixture:%s:%d" % (label, i)).encode("utf-8")).digest()
            i += 1
    return bytes(out[:n])


def cmd_content(src):
    os.makedirs(src, exist_ok=True)
    os.chmod(src, 0o755)
    for rel, (kind, n) in sorted(SOURCES.items()):
        path = os.path.join(src, rel)
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        with open(path, "wb") as f:
            f.write(content(rel, kind, n))
        # Fixed mode (no "x" attr from libtorrent) and mtime, whatever the umask.
        os.chmod(path, 0o644)
        os.utime(path, (MTIME, MTIME))
    for root, dirs, _files in os.walk(src):
        for dname in dirs:
            os.chmod(os.path.join(root, dname), 0o755)


# ---------------------------------------------------------------------------
# Bencode writer that can also write non-canonical bencode.

class Pairs:
    """A dict written in exactly the given order, duplicates allowed."""

    def __init__(self, *pairs):
        self.pairs = list(pairs)


class Raw:
    """Bytes inserted verbatim (e.g. b"i016384e")."""

    def __init__(self, data):
        self.data = data


def benc(v):
    if isinstance(v, Raw):
        return v.data
    if isinstance(v, bool):
        raise TypeError("bool")
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode("utf-8")
    if isinstance(v, (bytes, bytearray)):
        return b"%d:%s" % (len(v), bytes(v))
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, Pairs):
        return b"d" + b"".join(benc(k) + benc(x) for k, x in v.pairs) + b"e"
    if isinstance(v, dict):
        # Canonical: keys are byte strings sorted as raw bytes.
        items = [((k.encode("utf-8") if isinstance(k, str) else k), x) for k, x in v.items()]
        items.sort(key=lambda kv: kv[0])
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(type(v))


# ---------------------------------------------------------------------------
# Minimal lenient bencode reader that records spans (used to re-derive
# extra-info-keys.torrent from a real torrent and to cross-check libtorrent's
# info hash against SHA-1 of the raw info span).

def bdec(buf, i=0):
    """Return (value, end). Dicts become lists of (key, value, start, end)."""
    c = buf[i:i + 1]
    if c == b"i":
        j = buf.index(b"e", i)
        return int(buf[i + 1:j]), j + 1
    if c == b"l":
        i += 1
        out = []
        while buf[i:i + 1] != b"e":
            v, i = bdec(buf, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = []
        while buf[i:i + 1] != b"e":
            k, i = bdec(buf, i)
            s = i
            v, i = bdec(buf, i)
            out.append((k, v, s, i))
        return Pairs(*out), i + 1
    if c.isdigit():
        j = buf.index(b":", i)
        n = int(buf[i:j])
        return buf[j + 1:j + 1 + n], j + 1 + n
    raise ValueError("bad bencode at %d" % i)


def info_span_sha1(buf):
    top, _ = bdec(buf)
    for k, _v, s, e in top.pairs:
        if k == b"info":
            return hashlib.sha1(buf[s:e]).hexdigest()
    return None


def to_plain(v):
    """Pairs-with-spans -> ordinary dict (for re-encoding canonically)."""
    if isinstance(v, Pairs):
        return {k: to_plain(x) for k, x, _s, _e in v.pairs}
    if isinstance(v, list):
        return [to_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------
# libtorrent-made torrents.

def lt_make(src, out, target, piece_size, flags, trackers=(), url_seeds=(),
            comment=None, creator=None):
    import libtorrent as lt
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(src, target))
    ct = lt.create_torrent(fs, piece_size, flags)
    for url, tier in trackers:
        ct.add_tracker(url, tier)
    for url in url_seeds:
        ct.add_url_seed(url)
    if comment is not None:
        ct.set_comment(comment)
    if creator is not None:
        ct.set_creator(creator)
    lt.set_piece_hashes(ct, src)
    e = ct.generate()
    if b"creation date" in e:
        e[b"creation date"] = CREATION_DATE
    with open(out, "wb") as f:
        f.write(lt.bencode(e))


def cmd_build(src, out):
    import libtorrent as lt
    v1 = lt.create_torrent.v1_only | lt.create_torrent.canonical_files
    j = lambda name: os.path.join(out, name)

    lt_make(src, j("libtorrent-single.torrent"), "lt-single.bin", 16384, v1,
            trackers=[(TRACKER_HTTP, 0)])
    lt_make(src, j("libtorrent-multi-padded.torrent"), "lt-multi", 16384, v1,
            trackers=[(TRACKER_HTTP, 0), (TRACKER_UDP, 1)],
            url_seeds=[WEB_SEED],
            comment="shoal test fixture: libtorrent v1 multi-file with BEP 47 padding",
            creator=CREATOR)
    lt_make(src, j("libtorrent-hybrid.torrent"), "lt-hybrid", 16384, 0,
            trackers=[(TRACKER_HTTP, 0)],
            comment="shoal test fixture: libtorrent v1+v2 hybrid",
            creator=CREATOR)

    # extra-info-keys: libtorrent-single.torrent with unknown keys added to
    # the info dict, re-encoded canonically (sorted keys).
    with open(j("libtorrent-single.torrent"), "rb") as f:
        top = to_plain(bdec(f.read())[0])
    top[b"info"][b"source"] = b"shoal-fixtures"
    top[b"info"][b"x-custom"] = {b"answer": 42, b"list": [b"a", 1, {b"k": b"v"}]}
    top[b"x-top-level"] = b"unknown top-level key"
    write(j("extra-info-keys.torrent"), benc(top))

    # Hand-written: lenient-but-valid and defect fixtures.
    for name, data in handmade().items():
        write(j(name), data)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------
# Hand-written torrents built from two shared valid bases.

PL = 16384
# Single-file base: one 40000-byte file, 3 pieces (16384, 16384, 7232).
S_NAME = "base.bin"
S_DATA = content("defect-base-single", "bin", 40000)
# Multi-file base: a.bin 20000 + sub/b.bin 13000 = 33000 bytes, 3 pieces.
M_NAME = "base-multi"
M_FILES = [(["a.bin"], content("defect-base-multi/a", "bin", 20000)),
           (["sub", "b.bin"], content("defect-base-multi/b", "bin", 13000))]


def piece_hashes(data, pl=PL):
    return b"".join(hashlib.sha1(data[i:i + pl]).digest() for i in range(0, len(data), pl))


S_PIECES = piece_hashes(S_DATA)
M_PIECES = piece_hashes(b"".join(d for _p, d in M_FILES))


def single_info(**over):
    """Info dict pairs in canonical order; over: key -> value, or None to drop."""
    base = [("length", len(S_DATA)), ("name", S_NAME), ("piece length", PL),
            ("pieces", S_PIECES)]
    return apply(base, over)


def multi_files(paths=None, lengths=None):
    out = []
    for idx, (p, d) in enumerate(M_FILES):
        out.append({"length": lengths[idx] if lengths else len(d),
                    "path": paths[idx] if paths else p})
    return out


def multi_info(**over):
    base = [("files", multi_files()), ("name", M_NAME), ("piece length", PL),
            ("pieces", M_PIECES)]
    return apply(base, over)


def apply(pairs, over):
    over = {k.replace("_", " "): v for k, v in over.items()}
    out = []
    for k, v in pairs:
        if k in over:
            v = over.pop(k)
            if v is None:
                continue
        out.append((k, v))
    out.extend(over.items())
    out.sort(key=lambda kv: kv[0].encode("utf-8"))
    return Pairs(*out)


def torrent(info):
    return Pairs(("announce", TRACKER_HTTP), ("info", info))


def handmade():
    f = {}
    # Valid bases (both load in libtorrent; listed in info-hashes.txt).
    f["defect-base.torrent"] = benc(torrent(single_info()))
    f["defect-base-multi.torrent"] = benc(torrent(multi_info()))

    # Lenient but valid.
    f["unsorted-keys.torrent"] = benc(Pairs(
        ("info", Pairs(
            ("pieces", M_PIECES),
            ("piece length", PL),
            ("name", M_NAME),
            ("files", [Pairs(("path", p), ("length", len(d))) for p, d in M_FILES]),
        )),
        ("comment", "keys out of order in the top-level, info and file dicts"),
        ("announce", TRACKER_HTTP),
    ))
    f["noncanonical-int.torrent"] = benc(torrent(Pairs(
        ("length", len(S_DATA)),
        ("name", Raw(b"0%d:%s" % (len(S_NAME), S_NAME.encode()))),   # "08:base.bin"
        ("piece length", Raw(b"i0%de" % PL)),                          # "i016384e"
        ("pieces", S_PIECES),
        ("private", Raw(b"i-0e")),                                     # negative zero
    )))

    # Defects: each differs from a base in exactly one respect.
    s = lambda **o: benc(torrent(single_info(**o)))
    m = lambda **o: benc(torrent(multi_info(**o)))
    base = f["defect-base.torrent"]

    f["missing-info.torrent"] = benc(Pairs(("announce", TRACKER_HTTP)))
    f["missing-name.torrent"] = s(name=None)
    f["missing-piece-length.torrent"] = s(piece_length=None)
    f["missing-pieces.torrent"] = s(pieces=None)
    f["missing-length.torrent"] = s(length=None)
    f["both-length-and-files.torrent"] = s(files=[{"length": len(S_DATA), "path": [S_NAME]}])
    f["pieces-not-multiple-of-20.torrent"] = s(pieces=S_PIECES[:-1])          # 59 bytes
    f["piece-count-mismatch.torrent"] = s(pieces=S_PIECES[:-20])              # 2 of 3 hashes
    f["zero-piece-length.torrent"] = s(piece_length=0)
    # 2^40: the whole file is one piece, so give the one correct hash; the
    # only defect is the size of the piece length itself.
    f["absurd-piece-length.torrent"] = s(piece_length=1 << 40,
                                         pieces=hashlib.sha1(S_DATA).digest())
    f["negative-length.torrent"] = s(length=-len(S_DATA))
    f["negative-piece-length.torrent"] = s(piece_length=-PL)
    big = 0x6000000000000000   # each fits in i64; the sum (0xC000000000000000) does not
    f["total-length-overflow.torrent"] = m(files=multi_files(lengths=[big, big]))
    f["empty-file-list.torrent"] = m(files=[])
    f["path-dotdot.torrent"] = m(files=multi_files(paths=[["a.bin"], ["..", "b.bin"]]))
    f["path-absolute.torrent"] = m(files=multi_files(paths=[["a.bin"], ["/etc", "passwd"]]))
    f["path-empty-component.torrent"] = m(files=multi_files(paths=[["a.bin"], ["sub", "", "b.bin"]]))
    f["path-slash-in-component.torrent"] = m(files=multi_files(paths=[["a.bin"], ["sub/b.bin"]]))
    f["path-nul.torrent"] = m(files=multi_files(paths=[["a.bin"], ["sub", "b\x00.bin"]]))
    f["empty-path.torrent"] = m(files=multi_files(paths=[["a.bin"], []]))
    f["name-dotdot.torrent"] = s(name="..")
    # "name" twice with different values; each alone would be valid.
    f["duplicate-key.torrent"] = benc(torrent(Pairs(
        ("length", len(S_DATA)), ("name", S_NAME), ("name", "other.bin"),
        ("piece length", PL), ("pieces", S_PIECES))))
    f["trailing-garbage.torrent"] = base + b"trailing garbage\n"
    f["truncated.torrent"] = base[:len(base) // 2]
    f["not-a-dict.torrent"] = b"l" + base + b"e"          # the base torrent wrapped in a list
    f["info-not-a-dict.torrent"] = benc(torrent([single_info()]))   # info is a list holding the dict
    f["wrong-type-length.torrent"] = s(length=str(len(S_DATA)))      # "5:40000"
    return f


VALID = [
    "mktorrent-single.torrent",
    "mktorrent-multi.torrent",
    "libtorrent-single.torrent",
    "libtorrent-multi-padded.torrent",
    "libtorrent-hybrid.torrent",
    "extra-info-keys.torrent",
    "unsorted-keys.torrent",
    "noncanonical-int.torrent",
    "defect-base.torrent",
    "defect-base-multi.torrent",
]


def cmd_verify(out):
    import libtorrent as lt
    ok = True
    lines = []
    print("== valid fixtures (libtorrent %s) ==" % lt.__version__)
    for name in VALID:
        path = os.path.join(out, name)
        with open(path, "rb") as fh:
            buf = fh.read()
        try:
            ti = lt.torrent_info(path)
        except Exception as e:  # noqa: BLE001
            print("REFUSED by libtorrent: %s: %s" % (name, e))
            ok = False
            continue
        h = str(ti.info_hashes().v1)
        own = info_span_sha1(buf)
        if own != h:
            print("MISMATCH %s: libtorrent %s, sha1(raw info span) %s" % (name, h, own))
            ok = False
        lines.append("%s  %s\n" % (h, name))
        v2 = ti.info_hashes().v2 if ti.info_hashes().has_v2() else None
        print("%s  %s  (%d bytes, piece length %d, %d pieces, %d files, total %d%s)"
              % (h, name, len(buf), ti.piece_length(), ti.num_pieces(),
                 ti.num_files(), ti.total_size(),
                 ", v2 %s" % v2 if v2 is not None else ""))
        fs = ti.files()
        if ti.num_files() > 1 or name.startswith("mktorrent-multi"):
            for i in range(fs.num_files()):
                pad = " [pad]" if fs.file_flags(i) & lt.file_storage.flag_pad_file else ""
                print("    %-40s %7d%s" % (fs.file_path(i), fs.file_size(i), pad))
    with open(os.path.join(out, "info-hashes.txt"), "w") as fh:
        fh.writelines(lines)

    print("== defect fixtures: what libtorrent says (informative only) ==")
    for name in sorted(os.listdir(out)):
        if not name.endswith(".torrent") or name in VALID:
            continue
        try:
            ti = lt.torrent_info(os.path.join(out, name))
            print("  accepted  %-36s %s" % (name, ti.info_hashes().v1))
        except Exception as e:  # noqa: BLE001
            print("  refused   %-36s %s" % (name, e))
    return 0 if ok else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "content":
        cmd_content(argv[2])
        return 0
    if len(argv) == 4 and argv[1] == "build":
        cmd_build(argv[2], argv[3])
        return 0
    if len(argv) == 3 and argv[1] == "verify":
        return cmd_verify(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
