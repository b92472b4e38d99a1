from pathlib import Path

from podium.fingerprint import combine, file_digest, path_fingerprint


def _tree(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.bin").write_bytes(b"x" * 100)
    (root / "y.txt").write_text("hello")
    return root


def test_same_content_same_fingerprint_wherever_it_lies(tmp_path):
    one = path_fingerprint(_tree(tmp_path / "one"))
    two = path_fingerprint(_tree(tmp_path / "two"))
    assert one == two
    assert one["files"] == 2 and one["bytes"] == 105


def test_one_changed_byte_or_renamed_file_changes_it(tmp_path):
    root = _tree(tmp_path / "t")
    before = path_fingerprint(root)["sha256"]
    (root / "y.txt").write_text("hellO")
    changed = path_fingerprint(root)["sha256"]
    (root / "y.txt").rename(root / "z.txt")
    renamed = path_fingerprint(root)["sha256"]
    assert len({before, changed, renamed}) == 3


def test_large_files_hash_their_edges_and_size(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    limits = {"full_hash_limit": 1024, "edge_bytes": 256}
    before = file_digest(big, **limits)
    data = bytearray(big.read_bytes())
    data[-1] ^= 1  # the tail is read
    big.write_bytes(bytes(data))
    assert file_digest(big, **limits) != before
    data[8000] ^= 1  # the middle of a large file is not (documented trade-off)
    after_tail = file_digest(big, **limits)
    big.write_bytes(bytes(data))
    assert file_digest(big, **limits) == after_tail


def test_missing_path_and_combination(tmp_path):
    assert path_fingerprint(tmp_path / "nope")["sha256"] == "missing"
    assert combine({}) == "none"
    a, b = {"sha256": "1"}, {"sha256": "2"}
    assert combine({"x": a, "y": b}) == combine({"y": b, "x": a})
    assert combine({"x": a, "y": b}) != combine({"x": b, "y": a})
