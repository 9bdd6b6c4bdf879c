"""The password generator: random characters, or a passphrase of words. Nothing here is stored or logged.

Characters and words are drawn with `secrets` (the operating system's CSPRNG). Words come from the EFF long
word list (7,776 words, 12.9 bits each), as the `xkcdpass` package ships it; its licence (CC BY 3.0 US) and
attribution: docs/licences/eff-wordlist.md.
"""

import math
import secrets
import string
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from xkcdpass import xkcd_password

from clientvault.errors import Invalid

LENGTH_MIN, LENGTH_MAX, LENGTH_DEFAULT = 8, 128, 20
WORDS_MIN, WORDS_MAX = 3, 12
# Punctuation that a shell, a JSON or INI file or a URL takes as it is: no quotes, backslash, backtick or space.
SYMBOLS = "!#$%&()*+,-./:;<=>?@[]^_{}~"
SEPARATOR = " "  # between words: a few EFF words have a hyphen of their own
WORD_LIST = "eff-long"
WORD_COUNT = 7776
DRAWS_MAX = 1000  # a draw lacking a kind of character is drawn again; 1000 misses in a row cannot happen


@dataclass(frozen=True, slots=True)
class Generated:
    password: str = field(repr=False)
    entropy_bits: float  # of the draw (alphabet and length), not an estimate of the text


@cache
def word_list() -> tuple[str, ...]:
    """The EFF long list, checked: 7,776 distinct lower-case words."""
    path = Path(xkcd_password.locate_wordfile(WORD_LIST))
    words = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(set(words)) != WORD_COUNT:
        raise RuntimeError(f"the {WORD_LIST} word list has {len(set(words))} distinct words, not {WORD_COUNT}")
    return words


def generate(*, length: int | None = None, symbols: bool | None = None, words: int | None = None) -> Generated:
    """A password of `length` characters (default 20; letters, digits and, unless `symbols` is false, symbols,
    with at least one of each kind), or a passphrase of `words` words. Out of range or both at once: Invalid."""
    if words is not None:
        if length is not None or symbols is not None:
            raise Invalid("words makes a passphrase: give it alone, without length or symbols", "words")
        if not WORDS_MIN <= words <= WORDS_MAX:
            raise Invalid(f"words must be between {WORDS_MIN} and {WORDS_MAX}", "words")
        return _passphrase(words)
    length = LENGTH_DEFAULT if length is None else length
    if not LENGTH_MIN <= length <= LENGTH_MAX:
        raise Invalid(f"length must be between {LENGTH_MIN} and {LENGTH_MAX}", "length")
    return _characters(length, symbols is not False)


def _passphrase(count: int) -> Generated:
    chosen = word_list()
    return Generated(SEPARATOR.join(secrets.choice(chosen) for _ in range(count)), count * math.log2(len(chosen)))


def _characters(length: int, symbols: bool) -> Generated:
    kinds = [string.ascii_lowercase, string.ascii_uppercase, string.digits, *([SYMBOLS] if symbols else [])]
    alphabet = "".join(kinds)
    for _ in range(DRAWS_MAX):
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(char in kind for char in password) for kind in kinds):
            return Generated(password, length * math.log2(len(alphabet)))
    raise RuntimeError("the generator drew no password with every kind of character")
