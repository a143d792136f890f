"""Pixel-stable pictures of the Curate mode and the edit dialog on the sample vault.
Regenerate after an intended change with: scripts/test tests/tui/test_snapshots.py --snapshot-update"""

from tui.app import make_app


def test_curate_screen(snap_compare, sample_store, config):
    assert snap_compare(make_app(config, sample_store), terminal_size=(110, 36))


def test_edit_dialog(snap_compare, sample_store, config):
    assert snap_compare(make_app(config, sample_store), press=["j", "e"], terminal_size=(110, 36))
