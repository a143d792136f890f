"""The voice demo's vault (data/voice/vault) is what scripts/make_voice_data.py makes from the committed source,
and each note is a dated title over the author's prose, with no editorial note or etext mark left in it."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VAULT = REPO / "data" / "voice" / "vault"


def test_vault_reproduces(tmp_path):
    out = tmp_path / "vault"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_voice_data.py"), "--out", str(out)], check=True,
                   capture_output=True)
    made = {p.name: p.read_bytes() for p in out.glob("*.md")}
    committed = {p.name: p.read_bytes() for p in VAULT.glob("*.md")}
    assert made == committed


def test_notes_are_dated_prose():
    notes = sorted(VAULT.glob("*.md"))
    assert 150 <= len(notes) <= 300
    for p in notes:
        text = p.read_text(encoding="utf-8")
        m = re.match(r'---\ntitle: "([A-Z][a-z]+ \d{1,2}, 1666(?: \(second entry\))?)"\ndate: "(1666-\d\d-\d\d)"\n'
                     r"---\n\n(.+)\n\Z", text, re.DOTALL)
        assert m, p.name
        assert p.stem.startswith(m.group(2))
        body = m.group(3)
        assert len(body.split()) >= 40
        assert not re.search(r"[\[\]]|--|>>|  |gutenberg", body, re.IGNORECASE), p.name
