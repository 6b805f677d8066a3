#!/usr/bin/env python3
"""The verdict of one Autobahn TestSuite run.

    python verdict.py REPORT_DIR

Reads REPORT_DIR/spec.json (what was asked) and REPORT_DIR/index.json
(what the suite wrote at the end). A case fails when its behaviour is
FAILED, when its closing behaviour is FAILED or UNCLEAN (the red close
column of the suite's own report), or when it has no result at all (the
server died, or the run was cut short). OK, NON-STRICT, INFORMATIONAL and
UNIMPLEMENTED pass. Prints the counts by category and every failure, then
"N passed, M failed" last; exits 0 only if nothing failed and cases ran.
"""

import collections
import contextlib
import io
import json
import os
import sys

FAILING_CLOSE = {"FAILED", "UNCLEAN"}
CATEGORIES = {
    "1": "framing", "2": "pings and pongs", "3": "reserved bits", "4": "opcodes",
    "5": "fragmentation", "6": "UTF-8", "7": "close handling", "9": "limits and performance",
    "10": "miscellaneous", "12": "compression", "13": "compression parameters",
}


def numbers(case_id):
    return [int(part) for part in case_id.split(".")]


def wanted(spec):
    """The cases the suite runs for this spec, as it works them out itself."""
    with contextlib.redirect_stdout(io.StringIO()):
        from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
        from autobahntestsuite.caseset import CaseSet
        cases = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
        return list(cases.parseSpecCases(spec))


def main(report):
    with open(os.path.join(report, "spec.json")) as f:
        spec = json.load(f)
    results = {}
    index = os.path.join(report, "index.json")
    if os.path.exists(index):
        with open(index) as f:
            for cases in json.load(f).values():
                results.update(cases)
    verdicts = {}
    for case_id in wanted(spec):
        result = results.get(case_id)
        if result is None:
            verdicts[case_id] = ("FAILED", "no result: the server died or the run was cut short")
        elif result["behavior"] == "FAILED" or result["behaviorClose"] in FAILING_CLOSE:
            verdicts[case_id] = ("FAILED", f"behaviour {result['behavior']}, close {result['behaviorClose']}, "
                                           f"close code {result.get('remoteCloseCode')}")
        else:
            verdicts[case_id] = (result["behavior"], "")
    by_category = collections.defaultdict(collections.Counter)
    for case_id, (verdict, _) in verdicts.items():
        by_category[case_id.split(".")[0]][verdict] += 1
    for category in sorted(by_category, key=int):
        counts = ", ".join(f"{verdict} {n}" for verdict, n in sorted(by_category[category].items()))
        print(f"{category:>3} {CATEGORIES.get(category, ''):<24} {counts}")
    failed = sorted((case_id for case_id, (verdict, _) in verdicts.items() if verdict == "FAILED"), key=numbers)
    for case_id in failed:
        print(f"FAILED {case_id}: {verdicts[case_id][1]}")
    print(f"{len(verdicts) - len(failed)} passed, {len(failed)} failed")
    return 0 if verdicts and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
