#!/usr/bin/env python3
"""Writes python_golden.json: what Python 3 computes for every built-in operation over a
table of cases, for golden_test.go to compare the Go operations against.

Run from this directory:  python3 gen_golden.py

Inputs are written as the API writes values ([kind, text], kinds as in package value), and
turned into Python values the way the Go side coerces them (value.Parse, Number, Truth,
String), so that only the operation itself is being compared. Each case records Python's
outputs as [type name, str()], or the exception Python raised, or why the Go side refuses a
result Python gives (a complex number, an int beyond 64 bits).
"""

import base64
import binascii
import json
import math
import operator
import random
import re
import statistics
import sys
from functools import reduce

INF, NAN = math.inf, math.nan
I64 = (-(2**63), 2**63 - 1)


# --- the API's values, as package value parses and coerces them ---------------------------

def I(x):
    return ["int", str(x)]


def F(x):
    return ["float", repr(float(x))]


def S(x):
    return ["string", x]


def B(x):
    return ["bool", "true" if x else "false"]


def lit(x):
    """A Python literal as a typed input."""
    if isinstance(x, bool):
        return B(x)
    if isinstance(x, int):
        return I(x)
    if isinstance(x, float):
        return F(x)
    return S(x)


class Refused(Exception):
    """The Go side refuses the input the same way (not a number, not a bool)."""


def parse(inp):
    kind, text = inp
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text == "true"
    return text


def parse_float(t):
    low = t.lower()
    if low in ("inf", "+inf", "infinity", "+infinity"):
        return INF
    if low in ("-inf", "-infinity"):
        return -INF
    if low in ("nan", "+nan", "-nan"):
        return NAN
    if re.search(r"[xXpP_]", t):
        raise Refused(t)
    f = float(t)
    if math.isinf(f):  # strconv.ParseFloat fails on out of range
        raise Refused(t)
    return f


def number(inp):
    v = parse(inp)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    t = v.strip()
    if re.fullmatch(r"[+-]?[0-9]+", t) and I64[0] <= int(t) <= I64[1]:
        return int(t)
    try:
        return parse_float(t)
    except ValueError:
        raise Refused(v)


def truth(inp):
    v = parse(inp)
    if isinstance(v, (bool, int, float)):
        return bool(v)
    t = v.strip()
    if t in ("true", "True", "TRUE", "1"):
        return True
    if t in ("false", "False", "FALSE", "0"):
        return False
    raise Refused(v)


def text(inp):
    v = parse(inp)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


# --- the operations, in Python ------------------------------------------------------------

def nums(ins):
    return [number(i) for i in ins]


def fold(f):
    return lambda ins, n: [reduce(lambda a, b: within64(f(a, b)), nums(ins))]


def within64(r):
    """Go refuses a step whose int result needs more than 64 bits, even if later steps
    would bring it back in range."""
    if isinstance(r, Huge) or type(r) is int and not I64[0] <= r <= I64[1]:
        raise Beyond(r)
    return r


class Beyond(Exception):
    """A step of a fold gave an int beyond 64 bits."""


class Huge:
    """An int power too large to compute, let alone to fit 64 bits."""


def safe_pow(a, b):
    if type(a) is int and type(b) is int and b >= 64 and abs(a) >= 2:
        return Huge()
    return operator.pow(a, b)


def cmp(f):
    return lambda ins, n: [f(*nums(ins))]


def stat(f):
    return lambda ins, n: [f(nums(ins))]


def logic(f):
    return lambda ins, n: [f([truth(i) for i in ins])]


def s1(f):
    return lambda ins, n: [f(*[text(i) for i in ins])]


def split(ins, n):
    s, sep = text(ins[0]), text(ins[1])
    parts = s.split(sep)
    return (parts + [""] * n)[:n]


def capture(s, rx):
    m = re.search(rx, s)
    if m is None:
        return ""
    return (m.group(1) if re.compile(rx).groups else m.group(0)) or ""


def replace(s, rx, repl):
    # Go expands $1, Python \1: only compare replacements where both read the same.
    assert "$" not in repl and "\\" not in repl, repl
    return re.sub(rx, repl, s)


OPS = {
    "STR_CONCAT": s1(lambda *s: "".join(s)),
    "STR_REPLACE": s1(replace),
    "STR_SUBTRACT": s1(lambda s, p: s.replace(p, "")),
    "STR_UPPER": s1(str.upper),
    "STR_LOWER": s1(str.lower),
    "STR_TRIM": s1(str.strip),
    "STR_SPLIT": split,
    "STR_MATCH": s1(lambda s, rx: re.search(rx, s) is not None),
    "STR_CAPTURE": s1(capture),
    "STR_COUNT": s1(len),
    "STR_MODE": s1(lambda *s: statistics.mode(s)),
    "STR_ENCODE_B64": s1(lambda s: base64.b64encode(s.encode()).decode()),
    "STR_DECODE_B64": s1(lambda s: base64.b64decode(s, validate=True).decode()),
    "STR_ENCODE_HEX": s1(lambda s: s.encode().hex()),
    "STR_DECODE_HEX": s1(lambda s: binascii.unhexlify(s).decode()),
    "NBR_SUM": fold(operator.add),
    "NBR_SUBTRACT": fold(operator.sub),
    "NBR_MULTIPLY": fold(operator.mul),
    "NBR_DIVIDE": fold(operator.truediv),
    "NBR_FLOOR": fold(operator.floordiv),
    "NBR_MODULO": fold(operator.mod),
    "NBR_POWER": fold(safe_pow),
    "NBR_INVERSE_SIGN": lambda ins, n: [operator.neg(number(ins[0]))],
    "NBR_GREATER": cmp(operator.gt),
    "NBR_LOWER": cmp(operator.lt),
    "NBR_GREATEREQ": cmp(operator.ge),
    "NBR_LOWEREQ": cmp(operator.le),
    "NBR_MEAN": stat(statistics.mean),
    "NBR_GEOMETRIC_MEAN": stat(statistics.geometric_mean),
    "NBR_HARMONIC_MEAN": stat(statistics.harmonic_mean),
    "NBR_MEDIAN": stat(statistics.median),
    "NBR_MEDIAN_LOW": stat(statistics.median_low),
    "NBR_MEDIAN_HIGH": stat(statistics.median_high),
    "NBR_MEDIAN_GROUPED": stat(statistics.median_grouped),
    "NBR_MODE": stat(statistics.mode),
    "NBR_POP_STD_DEV": stat(statistics.pstdev),
    "NBR_STD_DEV": stat(statistics.stdev),
    "NBR_POP_VAR": stat(statistics.pvariance),
    "NBR_VAR": stat(statistics.variance),
    "LGC_NOT": logic(lambda b: not b[0]),
    "LGC_AND": logic(all),
    "LGC_OR": logic(any),
    "LGC_XOR": logic(lambda b: sum(b) % 2 == 1),
    "LGC_NAND": logic(lambda b: not all(b)),
    "LGC_NOR": logic(lambda b: not any(b)),
}

# --- the cases ----------------------------------------------------------------------------

cases = []


def case(op, ins, nout=1):
    cases.append((op, [i if isinstance(i, list) else lit(i) for i in ins], nout))


rng = random.Random(20240611)

# Strings.
for s in ["abc", "", "Hello, World!", "  padded\t\n", "\x1c\x1dsep\x1f \u3000", "\u00a0nbsp\u2009",
          "straße", "ﬁnal", "ΟΔΟΣ ΣΑΣ", "İstanbul", "Ǆemal", "ÀÉÎõü", "日本語テキスト", "emoji 😀!", "a\u0301"]:
    for op in ["STR_UPPER", "STR_LOWER", "STR_TRIM", "STR_COUNT", "STR_ENCODE_B64", "STR_ENCODE_HEX"]:
        case(op, [s])
for v in [12, -3, 2.5, 1e16, 1e-05, 0.1 + 0.2, True, False, INF, NAN, -0.0]:
    for op in ["STR_UPPER", "STR_COUNT", "STR_TRIM"]:
        case(op, [v])
    case("STR_CONCAT", [v, "|", v])
case("STR_CONCAT", ["a"])
case("STR_CONCAT", ["a", "b", "", "c"])
case("STR_CONCAT", [1, 2.0, True, "x"])
for s, part in [("banana", "an"), ("banana", "a"), ("banana", ""), ("aaaa", "aa"), ("abc", "x"),
                ("1.50", "0"), (150, 5), (2.5, ".")]:
    case("STR_SUBTRACT", [s, part])
for s, rx, repl in [("hello world", "o", "0"), ("hello world", "[aeiou]", ""), ("2024-06-11", r"\d+", "N"),
                    ("abc", "x*", "-"), ("aaa", "a", "bb"), ("abc", "^", ">"), ("abc", "$", "<"),
                    ("Hello", "(?i)h", "J"), ("line1\nline2", "(?m)^l", "L"), ("tabs\tand  spaces", r"\s+", " "),
                    ("héllo", "é", "e"), (12345, "3", "x")]:
    case("STR_REPLACE", [s, rx, repl])
for s, rx in [("hello", "ell"), ("hello", "^ell"), ("hello", "o$"), ("hello", "xyz"), ("", ""), ("", "a*"),
              ("abc123", r"\d"), ("ABC", "(?i)abc"), ("a.b", r"a\.b"), ("axb", r"a\.b"), (42, "^4"), (True, "^t")]:
    case("STR_MATCH", [s, rx])
for s, rx in [("id=42;", r"id=(\d+)"), ("id=42;", r"\d+"), ("nothing", r"(\d+)"), ("abc", "(x)?b"),
              ("abc", "(a)(b)"), ("key: value", r"(\w+): (\w+)"), ("", "()"), ("aaa", "a*?"), ("xyz", "y|(z)"),
              ("héllo wörld", r"w(\S+)"), (3.25, r"\.(\d+)")]:
    case("STR_CAPTURE", [s, rx])
for s, sep, n in [("a,b,c", ",", 3), ("a,b,c", ",", 2), ("a,b,c", ",", 5), ("a,b,c", ",", 1), ("", ",", 2),
                  ("a,,b", ",", 3), ("a--b--c", "--", 3), ("abc", "abc", 2), ("no sep", ";", 2), ("x", "", 1),
                  (1.25, ".", 2), ("日本,語", ",", 2)]:
    case("STR_SPLIT", [s, sep], n)
for vals in [["a"], ["a", "b", "b"], ["b", "a", "a", "b"], ["x", "y", "z"], ["", "", "a"], [1, "1", 1.0],
             [True, "true", False], ["red", "red", "green", "blue", "blue"]]:
    case("STR_MODE", vals)
for s in ["aGVsbG8=", "aGVsbG8", "", "8J+YgA==", "w6k=", "YQ==", "YWI=", "YWJj", "!!!!", "aGVs bG8=", "YQ=", "Zm9v\u00e9"]:
    case("STR_DECODE_B64", [s])
for s in ["68656c6c6f", "68656C6C6F", "", "f09f9880", "c3a9", "6", "zz", "68 65", "0x68"]:
    case("STR_DECODE_HEX", [s])

# Numbers: every binary operation over every pair.
BINARY = ["NBR_SUM", "NBR_SUBTRACT", "NBR_MULTIPLY", "NBR_DIVIDE", "NBR_FLOOR", "NBR_MODULO", "NBR_POWER",
          "NBR_GREATER", "NBR_LOWER", "NBR_GREATEREQ", "NBR_LOWEREQ"]
PAIRS = [
    (7, 2), (-7, 2), (7, -2), (-7, -2), (-7, 3), (7, -3), (0, 5), (0, -5), (5, 0), (0, 0), (1, 3), (2, 3),
    (7.5, 2.0), (-7.5, 2), (7.5, -2), (0.1, 0.2), (0.3, 0.1), (1.0, 10.0), (1e308, 10.0), (-1e308, 1e308),
    (3, 0.5), (0.5, 3), (2**53 + 1, 1.0), (2**53 + 1, 2**53), (2**62, 2), (2**63 - 1, 1), (-2**63, -1),
    (-2**63, 1), (2**63 - 1, -1), (3037000500, 3037000500), (2**32, 2**31), (2, -1), (0, -1), (2, 0.5),
    (-8, 1 / 3), (-2.0, 3), (-2.0, 3.0), (-2, 2.5), (10.0, 400), (2, 63), (2, 62), (-2, 63), (-2, 64), (1, 2**62),
    (-1, 2**62 + 1), (1.1, 10), (1.1, 10.5), (2.0, -1074), (2.0, -1075), (0.5, 1074.5), (INF, 2), (INF, -3),
    (-INF, 3), (-INF, 2), (NAN, 1), (1, NAN), (NAN, 0), (1.0, INF), (0.5, -INF), (-0.0, 1), (-0.0, -1.0),
    (INF, -INF), (5.0, INF), (-5.0, INF), (5.0, -INF), (1e-320, 0.5), (0.0, 0.0), (7, 0.0), (0.0, -3),
    (-0.0, 3), (9007199254740993, 9007199254740992.0), (1e16, 3), (123456789, 1e-9), (-1.5, -0.5),
    (6, 3.0), (5e-324, 2), (1.7976931348623157e308, 2.0), (2, 1023), (2.0, 1024), (2.0, -0.5), (100, 0.5),
    ("1", "2"), (" 3 ", "1.5"), ("1e3", 1), ("-4", "2"), ("+5", "-0"), ("inf", 1), ("nan", "nan"),
    (True, 2), (False, True), ("9223372036854775808", 1), ("abc", 1), (1, ""), ("1_000", 1), ("0x10", 1),
]
for a, b in PAIRS:
    for op in BINARY:
        case(op, [a, b])
# Folding over more or fewer than two inputs.
for op in BINARY[:7]:
    case(op, [5])
    case(op, ["2.5"])
    case(op, [2, 3, 4])
    case(op, [100, 7.0, -3, 2])
    case(op, [1, 2, "x"])
case("NBR_SUM", [0.1] * 10)
case("NBR_SUM", [1e100, 1.0, -1e100])
case("NBR_SUM", [2**62, 2**62, -2**62])
case("NBR_MULTIPLY", [2**31, 2**31, 2])
case("NBR_POWER", [2, 3, 4])
case("NBR_POWER", [2, 2, 2, 2, 2])
for v in [5, -5, 0, 0.0, -0.0, -2**63, 2**63 - 1, INF, -INF, NAN, 2.5, "3", "-0", "abc", True]:
    case("NBR_INVERSE_SIGN", [v])

# Random floats for the last digit of pow, division, floor division and modulo.
for _ in range(150):
    x = rng.choice([rng.uniform(0, 10), rng.uniform(0, 1e6), 10 ** rng.uniform(-300, 300), rng.uniform(0.9, 1.1)])
    y = rng.choice([rng.uniform(-20, 20), rng.uniform(-2, 2), float(rng.randint(-40, 40)), rng.randint(-70, 70),
                    rng.uniform(-300, 300), 0.5 * rng.randint(-9, 9)])
    case("NBR_POWER", [x, y])
for _ in range(40):
    case("NBR_POWER", [rng.randint(-30, 30), rng.uniform(-5, 5)])
    case("NBR_POWER", [-rng.uniform(0, 10), float(rng.randint(-20, 20))])
for _ in range(60):
    x = rng.uniform(-1e6, 1e6) * rng.choice([1, 1e-10, 1e10])
    y = rng.choice([rng.uniform(-100, 100), rng.uniform(-1, 1), float(rng.randint(-9, 9) or 1)])
    for op in ["NBR_DIVIDE", "NBR_FLOOR", "NBR_MODULO"]:
        case(op, [x, y])
for _ in range(30):
    a, b = rng.randint(-2**63, 2**63 - 1), rng.randint(-2**40, 2**40) or 7
    for op in ["NBR_DIVIDE", "NBR_FLOOR", "NBR_MODULO", "NBR_SUM", "NBR_MULTIPLY", "NBR_GREATER"]:
        case(op, [a, b])
    case("NBR_LOWER", [a, float(a)])
    case("NBR_GREATEREQ", [a, float(a)])

# Statistics: every operation over every data set.
STATS = ["NBR_MEAN", "NBR_GEOMETRIC_MEAN", "NBR_HARMONIC_MEAN", "NBR_MEDIAN", "NBR_MEDIAN_LOW", "NBR_MEDIAN_HIGH",
         "NBR_MEDIAN_GROUPED", "NBR_MODE", "NBR_POP_STD_DEV", "NBR_STD_DEV", "NBR_POP_VAR", "NBR_VAR"]
DATA = [
    [1], [1.5], [-3], [0], [1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 4], [3, 1, 4, 1, 5, 9, 2, 6],
    [2.75, 1.75, 1.25, 0.25, 0.5, 1.25, 3.5], [0.0, 0.25, 0.25, 1.25, 1.5, 1.75, 2.75, 3.25],
    [1.5, 2.5, 2.5, 2.75, 3.25, 4.75], [2, 4, 4, 4, 5, 5, 7, 9], [-1, -2, -3], [-1.5, 2, -3.25, 4],
    [1, 2.5], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4], [54, 24, 36], [40, 60], [1, 3, 5, 7], [52, 52, 53, 54],
    [1, 1.0, 2, 2.0], [1.0, 1, 2], [5, 5, 3, 3, 1], [3, 3, 5, 5, 1], [7, 7, 7], [1e308, 1e308],
    [1.7976931348623157e308, -1.7976931348623157e308], [1.7976931348623157e308, 1.7976931348623157e308],
    [2**62, 2**62, 2**62 - 1], [2**63 - 1, 2**63 - 1], [-2**63, 2**63 - 1], [2**63 - 1, 2**63 - 2, 1],
    [3037000499, -3037000499], [10**15 + 0.1, 10**15 + 0.2, 10**15 + 0.3], [1e-320, 1e-320], [5e-324, 1.0],
    [0.0, 0.0], [0, 0, 1], [0, 1, 2], [0, -1], [-1, 0], [2, 0, -1], [1, INF], [INF, -INF], [INF, INF, 1],
    [-INF, 1], [NAN, 1, 2], [1, NAN, 2], [3, 1, NAN, 2], [NAN], [NAN, NAN], [1, 2, NAN, 3, 4],
    [INF], [1, 2, 3, INF, NAN], ["1", "2.5", "3"], ["4", " 5 ", "6"], [True, False, True], [1, "abc"],
    [0.5, 0.25, 0.125], [1, 10, 100, 1000], [3.0, 3, 3.0], [-0.0, 0.0], [0.0, -0.0, 1],
    [100, 200, 300, 400, 500, 600], [1e16, 1, -1e16], [9007199254740993, 9007199254740992.0],
    [1] * 70 + [2] * 30 + [3] * 5, list(range(100)), [x / 7 for x in range(80)],
]
for _ in range(25):
    n = rng.randint(1, 12)
    DATA.append([rng.randint(-1000, 1000) for _ in range(n)])
    DATA.append([round(rng.uniform(-100, 100), rng.randint(0, 6)) for _ in range(n)])
    DATA.append([rng.uniform(0.001, 1e6) for _ in range(n)])
    DATA.append([rng.choice([rng.randint(1, 9), float(rng.randint(1, 9)), rng.uniform(1, 9)]) for _ in range(n)])
for d in DATA:
    for op in STATS:
        case(op, d)

# Logic.
for ins in [[True], [False], ["true"], ["0"], ["True"], ["FALSE"], [1], [0], [2.5], [0.0], ["yes"], [""],
            [True, True], [True, False], [False, False], [True, True, True], [True, False, True],
            [False, False, False], [True, True, True, True], ["1", "0", "true", 0.0], [1, 2, 3], ["true", "maybe"]]:
    for op in ["LGC_AND", "LGC_OR", "LGC_XOR", "LGC_NAND", "LGC_NOR"]:
        case(op, ins)
    if len(ins) == 1:
        case("LGC_NOT", ins)

# --- evaluation ---------------------------------------------------------------------------


def describe(result):
    if isinstance(result, complex):
        return None, "Python gives a complex number, which a value cannot hold"
    if isinstance(result, int) and not isinstance(result, bool) and not I64[0] <= result <= I64[1]:
        return None, "Python gives an int beyond 64 bits"
    name = {bool: "bool", int: "int", float: "float", str: "str"}[type(result)]
    return [name, str(result)], None


out = []
for op, ins, nout in cases:
    c = {"op": op, "in": ins, "nout": nout}
    try:
        results = OPS[op](ins, nout)
    except Refused as e:
        c["error"] = "input refused: %r" % (e.args[0],)
    except Beyond as e:
        c["unsupported"] = "Python gives an int beyond 64 bits"
        c["python"] = "too large" if isinstance(e.args[0], Huge) else repr(e.args[0])
    except Exception as e:  # noqa: BLE001 - every Python failure is an expected error
        c["error"] = "%s: %s" % (type(e).__name__, e)
    else:
        outs = []
        for r in results:
            d, why = describe(r)
            if why:
                c["unsupported"] = why
                c["python"] = repr(r)
                break
            outs.append(d)
        else:
            c["out"] = outs
    out.append(c)

missing = set(OPS) - {c["op"] for c in out}
assert not missing, missing

with open("python_golden.json", "w", encoding="utf-8") as f:
    # One case a line keeps diffs readable.
    f.write('{"python": %s, "cases": [\n' % json.dumps(sys.version.split()[0]))
    f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out))
    f.write("\n]}\n")
print("%d cases" % len(out))
