#!/usr/bin/env python3
"""Makes an installed Autobahn TestSuite run on Python 3, in place.

    python port.py SITE_PACKAGES

autobahntestsuite (25.10.1 on PyPI) is Python 2 code. Most of it converts
mechanically (lib2to3). What does not is its use of byte strings: its test
cases write payloads as Python 2 `str` literals ('\\xce\\xba...'), which
lib2to3 turns into text. Rather than rewrite hundreds of cases, the port
keeps that convention (a payload is a `str` whose code points are its byte
values, which is what those literals meant) and converts to `bytes` where
the suite hands data to autobahn, and back where it compares or reports
what it received. The cases, and how the suite grades them, are not
touched.

Every edit must find exactly what it expects, or the port stops: a new
release of the suite must be looked at, not half ported. A marker file
makes a second run do nothing.
"""

import os
import re
import shutil
import subprocess
import sys

MARKER = ".ported-to-python3"

# The conversions, as a module of the suite.
BYTESTRINGS = '''"""Payloads as the test cases write them (a str per byte, as Python 2
literals meant) and as autobahn takes them (bytes); added by port.py."""

import binascii


def wire(value):
    """A payload as bytes for autobahn."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            # Real text (a few cases build payloads from unicode).
            return value.encode("utf-8")
    return value


def plain(value):
    """Received bytes in the cases' convention, for comparing; recursive."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def utf8_literal(text):
    """A Python 2 literal written with non-ASCII characters in a UTF-8
    file meant their UTF-8 bytes."""
    return text.encode("utf-8").decode("latin-1")


def hexlify(value):
    if isinstance(value, int):
        value = bytes([value & 0xFF])
    return binascii.b2a_hex(wire(value)).decode("ascii")


def reportable(value):
    """What a report can hold: bytes as text (hex when not UTF-8); recursive."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + binascii.b2a_hex(data).decode("ascii")
    if isinstance(value, (list, tuple)):
        return type(value)(reportable(item) for item in value)
    if isinstance(value, dict):
        return {key: reportable(item) for key, item in value.items()}
    return value
'''

# Appended to fuzzing.py: its protocol's way out to autobahn, and its logs.
FUZZING_TAIL = '''

# --- added by port.py: payloads cross to autobahn as bytes -----------------
import txaio as _txaio
from autobahntestsuite import bytestrings as _bytes

# autobahn 0.10.9 predates txaio's explicit choice of framework.
_txaio.use_twisted()


def binLogData(data, maxlen=64):
   data = _bytes.wire(data)
   if len(data) > maxlen - 4:
      return _bytes.hexlify(data[:maxlen]) + " ..."
   return _bytes.hexlify(data)


def asciiLogData(data, maxlen=64, replace=False):
   data = _bytes.wire(data)
   shown = data[:maxlen] + b" ..." if len(data) > maxlen - 4 else data
   try:
      return shown.decode("utf8", errors="replace" if replace else "strict")
   except UnicodeDecodeError:
      return "0x" + binLogData(data, maxlen)


def _logRxFrame(self, frameHeader, payload):
   if self.createStats:
      self.rxFrameStats[frameHeader.opcode] = self.rxFrameStats.get(frameHeader.opcode, 0) + 1
   if self.createWirelog:
      data = b"".join(_bytes.wire(part) for part in payload)
      mask = _bytes.hexlify(frameHeader.mask) if frameHeader.mask else None
      self.wirelog.append(("RF", (len(data), asciiLogData(data)), frameHeader.opcode,
                           frameHeader.fin, frameHeader.rsv, frameHeader.mask is not None, mask))


def _to_bytes(method, positions, names):
   """FuzzingProtocol.method, its arguments at these positions (after self)
   and of these names made bytes before autobahn's own method has them."""

   def converted(self, *args, **kwargs):
      args = [_bytes.wire(arg) if n in positions else arg for n, arg in enumerate(args)]
      for name in names:
         if name in kwargs:
            kwargs[name] = _bytes.wire(kwargs[name])
      return getattr(super(FuzzingProtocol, self), method)(*args, **kwargs)

   setattr(FuzzingProtocol, method, converted)


FuzzingProtocol.logRxFrame = _logRxFrame
_to_bytes("sendFrame", (1, 4), ("payload", "mask"))
_to_bytes("sendMessage", (0,), ("payload",))
_to_bytes("sendMessageFrame", (0,), ("payload",))
_to_bytes("sendMessageFrameData", (0,), ("payload",))
_to_bytes("sendPing", (0,), ("payload",))
_to_bytes("sendPong", (0,), ("payload",))
_to_bytes("sendCloseFrame", (1,), ("reasonUtf8",))
'''

# Targeted edits: (file in the package, text, replacement, times it occurs).
SUITE_EDITS = [
    # These bases are new-style in Python 3, where (object, Case) has no MRO.
    ("case/case6_x_x.py", "(object, Case, )", "(Case, )", 1),
    ("case/case7_7_X.py", "(object, Case, )", "(Case, )", 1),
    ("case/case7_9_X.py", "(object, Case, )", "(Case, )", 1),
    ("case/case9_7_X.py", "(object, Case, )", "(Case, )", 1),
    ("case/case12_x_x.py", "(object, Case, )", "(Case, )", 2),
    # The UTF-8 validator reads bytes.
    ("case/case6_x_x.py", "res = v.validate(vss[:i])", "res = v.validate(_bytes.wire(vss[:i]))", 1),
    # Integer division, as in Python 2.
    ("case/case10_1_1.py", "len(self.payload) / self.p.autoFragmentSize",
     "len(self.payload) // self.p.autoFragmentSize", 1),
    # zope's class advice is gone in Python 3 (case 9.9.1 is never run, but
    # its module is imported).
    ("case/case9_9_1.py", "from zope.interface import implements", "from zope.interface import implementer", 1),
    ("case/case9_9_1.py", "class FrameProducer:\n\n   implements(interfaces.IPushProducer)",
     "@implementer(interfaces.IPushProducer)\nclass FrameProducer:\n", 1),
    # What a case expected (str) against what it received (bytes).
    ("case/case.py", "      return pickle.dumps(obj1) == pickle.dumps(obj2)",
     "      return pickle.dumps(_bytes.plain(obj1)) == pickle.dumps(_bytes.plain(obj2))", 1),
    # Reports are written as text.
    ("fuzzing.py", "% (c[0], case[c[0]], c[1])).encode(\"utf-8\"))", "% (c[0], case[c[0]], c[1])))", 1),
    ("fuzzing.py", "ll.encode('utf8')))", "ll))", 1),
    ("fuzzing.py", "open(os.path.join(outdir, report_filename), 'w')",
     "open(os.path.join(outdir, report_filename), 'w', encoding='utf-8')", 4),
    ("fuzzing.py", "self.factory.logCase(caseResult)", "self.factory.logCase(_bytes.reportable(caseResult))", 1),
]

# autobahn 0.10.9 itself: one division that Python 3 makes a float, in code
# only the fuzzing cases reach (7.1.6 and 9.*).
AUTOBAHN_EDITS = [
    ("websocket/protocol.py", "for _ in range(payload_len / len(payload))",
     "for _ in range(payload_len // len(payload))", 1),
]

# An assignment of a double-quoted literal holding non-ASCII characters.
NON_ASCII_ASSIGNMENT = re.compile(r'^(\s*\w+\s*=\s*)("[^"\\]*[^\x00-\x7f][^"\\]*")\s*$')


def edit(base, edits):
    for name, old, new, times in edits:
        path = os.path.join(base, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found = text.count(old)
        if found != times:
            sys.exit(f"port.py: expected {times} of {old[:50]!r} in {name}, found {found}")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new))


def uses_bytestrings(path, lines):
    """Adds `from autobahntestsuite import bytestrings as _bytes` after the
    module's docstring and `from __future__` imports, where it can go."""
    at = 0
    for n, line in enumerate(lines):
        if line.startswith("from __future__"):
            at = n + 1
    lines.insert(at, "from autobahntestsuite import bytestrings as _bytes")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    site = sys.argv[1]
    suite = os.path.join(site, "autobahntestsuite")
    autobahn = os.path.join(site, "autobahn")
    if os.path.exists(os.path.join(suite, MARKER)):
        return
    for package in (suite, autobahn):
        if not os.path.isdir(package):
            sys.exit(f"port.py: {package} is not installed")
    for root, dirs, _ in os.walk(suite):
        if "__pycache__" in dirs:
            shutil.rmtree(os.path.join(root, "__pycache__"))

    # 1. The mechanical part. lib2to3 is in the standard library up to
    #    Python 3.12; fissix is its maintained fork.
    try:
        import lib2to3  # noqa: F401
        converter = "lib2to3"
    except ImportError:
        converter = "fissix"
    subprocess.run([sys.executable, "-W", "ignore", "-m", converter, "--write", "--nobackups",
                    "--no-diffs", suite], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # 2. The conversions.
    with open(os.path.join(suite, "bytestrings.py"), "w", encoding="utf-8") as f:
        f.write(BYTESTRINGS)

    # 3. Every module: hex dumps that take and give str, and the cases'
    #    non-ASCII literals as the bytes they meant.
    for root, _, files in os.walk(suite):
        for name in files:
            if not name.endswith(".py") or name == "bytestrings.py":
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            is_case = os.path.basename(root) == "case"
            ported = []
            for line in lines:
                line = line.replace("binascii.b2a_hex(", "_bytes.hexlify(")
                literal = NON_ASCII_ASSIGNMENT.match(line) if is_case else None
                if literal:
                    line = f"{literal.group(1)}_bytes.utf8_literal({literal.group(2)})"
                ported.append(line)
            if any("_bytes." in line for line in ported) or name in ("case.py", "case6_x_x.py", "fuzzing.py"):
                uses_bytestrings(path, ported)
            elif ported != lines:
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(ported))

    # 4. What 2to3 cannot know.
    edit(suite, SUITE_EDITS)
    edit(autobahn, AUTOBAHN_EDITS)
    with open(os.path.join(suite, "fuzzing.py"), "a", encoding="utf-8") as f:
        f.write(FUZZING_TAIL)

    # 5. autobahn 0.10.9's own tests, which wstest imports, want the
    #    unittest2 backport; the standard library's unittest does.
    with open(os.path.join(site, "unittest2.py"), "w", encoding="utf-8") as f:
        f.write("# Stands in for the unittest2 backport (added by port.py).\nfrom unittest import *  # noqa\n")

    open(os.path.join(suite, MARKER), "w").close()


if __name__ == "__main__":
    main()
