"""Cost of one request/message/tool id: the kernel-random pool (proxy_service/ids.py) beside the
`random.getrandbits` ids it replaced, measured in one run.

`python bench/ids.py` prints ns per id for 12 and 16 random bytes, each the best of 9 rounds of
200,000 calls (run it more than once: a shared machine moves these by tens of ns).
"""

from __future__ import annotations

import random
import timeit

from proxy_service.ids import random_hex

CALLS = 200_000


def getrandbits_hex(nbytes: int) -> str:
    """The replaced implementation: predictable after ~156 observed ids."""
    return f"{random.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def best_ns(function, nbytes: int) -> float:
    return min(timeit.repeat(lambda: function(nbytes), number=CALLS, repeat=9)) / CALLS * 1e9


def main() -> None:
    for nbytes in (12, 16):
        old, new = best_ns(getrandbits_hex, nbytes), best_ns(random_hex, nbytes)
        print(f"{nbytes} bytes: random.getrandbits {old:.0f} ns, os.urandom pool {new:.0f} ns")


if __name__ == "__main__":
    main()
