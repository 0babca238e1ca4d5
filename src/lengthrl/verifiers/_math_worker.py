"""math-verify worker process (run as a script by `lengthrl.verifiers.math_verifier`; no lengthrl imports).

Protocol: one JSON line `[pred, gold, timeout_s, float_rounding]` in on stdin, one line `1` or `0` out.
"""

import json
import logging
import sys


def equal(pred, gold, timeout, float_rounding):
    """math-verify equivalence of two extracted answers (both wrapped in \\boxed{} so LaTeX is recognised).

    The prediction must parse as a whole: math-verify's default (`any_match`) falls back to the last part of the
    text that parses when the whole does not, so `5 \\Leftarrow 3`, `5 | 3`, `5 \\bmod 3` or `5 ~ 3` would be
    read as `3`. With `first_match` a prediction that does not parse stays a string and equals only itself."""
    from math_verify import parse, verify

    g = parse("\\boxed{" + gold + "}", parsing_timeout=timeout)
    p = parse("\\boxed{" + pred + "}", parsing_timeout=timeout, extraction_mode="first_match")
    if not g or not p:
        return False
    return bool(verify(g, p, float_rounding=float_rounding, timeout_seconds=timeout))


def main():
    logging.disable(logging.CRITICAL)
    for line in sys.stdin:
        try:
            out = equal(*json.loads(line))
        except Exception:
            out = False
        sys.stdout.write("1\n" if out else "0\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
