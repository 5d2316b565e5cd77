"""Scale-shift sidecars: format @2, the golden file, byte-stable round trips and the three refusals."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cachesearch as cs
from cachesearch.schedule import ScaleShift, dump_schedule, load_schedule

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def copied(tmp_path):
    for p in GOLDEN.glob("v2_scale_shift*"):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / "v2_scale_shift.yaml"


def test_golden_sidecar_is_read_as_written():
    s = load_schedule(GOLDEN / "v2_scale_shift.yaml")
    assert s.format == "cachesearch/schedule@2"
    scale, shift = s.scale_shift[("up_blocks.1.attentions.2", 2)]
    assert scale.tolist() == [0.75] * 3 and shift.tolist() == [1.0, 2.0, 3.0]
    assert not scale.flags.writeable
    assert len(s.scale_shift) == 4 and s.scale_shift.blocks() == ("down_blocks.1.attentions.0",
                                                                  "up_blocks.1.attentions.2")


def test_save_writes_sidecar_beside_and_round_trips(tmp_path):
    s = load_schedule(GOLDEN / "v2_scale_shift.yaml")
    out = s.save(tmp_path / "mine.yaml")
    side = tmp_path / "mine.scale_shift.safetensors"
    assert side.read_bytes() == (GOLDEN / "v2_scale_shift.scale_shift.safetensors").read_bytes()
    assert f"scale_shift: {{file: mine.scale_shift.safetensors, sha256: {s.scale_shift.sha256}}}" in out.read_text()
    again = load_schedule(out)
    assert again == s and again.scale_shift == s.scale_shift
    # dropping the scale-shift (and the note) gives back an @1-expressible schedule
    plain = replace(s, scale_shift=None, provenance=None)
    assert plain.format == "cachesearch/schedule@1" and "\nscale_shift:" not in dump_schedule(plain)


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("name", ["/tmp/x.safetensors", "../v2_scale_shift.scale_shift.safetensors",
                                  "sub/../../x.safetensors"])
def test_sidecar_outside_the_folder_is_refused(copied, name):
    _edit(copied, "file: v2_scale_shift.scale_shift.safetensors", f"file: '{name}'")
    with pytest.raises(cs.ScheduleError, match=r"scale_shift\.file: .*(relative|leaves)"):
        load_schedule(copied)


def test_symlink_leaving_the_folder_is_refused(copied, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.safetensors"
    shutil.copy(GOLDEN / "v2_scale_shift.scale_shift.safetensors", outside)
    (tmp_path / "link.safetensors").symlink_to(outside)
    _edit(copied, "file: v2_scale_shift.scale_shift.safetensors", "file: link.safetensors")
    with pytest.raises(cs.ScheduleError, match=r"scale_shift\.file: .*leaves"):
        load_schedule(copied)


def test_missing_sidecar_is_refused(copied):
    (copied.parent / "v2_scale_shift.scale_shift.safetensors").unlink()
    with pytest.raises(cs.ScheduleError, match=r"scale_shift\.file: the sidecar .* is missing"):
        load_schedule(copied)


def test_sha256_mismatch_is_refused(copied):
    side = copied.parent / "v2_scale_shift.scale_shift.safetensors"
    other = ScaleShift({("up_blocks.1.attentions.2", 1): (np.ones(3), np.zeros(3))})
    side.write_bytes(other.to_bytes())
    with pytest.raises(cs.ScheduleError, match=r"scale_shift\.sha256: the sidecar .* has sha256"):
        load_schedule(copied)


def test_scale_shift_refused_in_v1_and_checked_against_the_masks():
    s = load_schedule(GOLDEN / "v2_scale_shift.yaml")
    text = dump_schedule(s).replace("schedule@2", "schedule@1").replace("note: ", "study: ")
    with pytest.raises(cs.ScheduleError, match=r"unknown key\(s\) \['scale_shift'\]"):
        cs.schedule.parse_schedule(cs.schedule._yaml.strict_yaml_load(text))
    with pytest.raises(cs.ScheduleError, match=r"recomputes at step 2"):
        replace(s, scale_shift=ScaleShift({("down_blocks.1.attentions.0", 2): (np.ones(4), np.zeros(4))}))
    with pytest.raises(cs.ScheduleError, match=r"not listed"):
        replace(s, scale_shift=ScaleShift({("mid_block", 1): (np.ones(4), np.zeros(4))}))
    with pytest.raises(cs.ScheduleError, match=r"scale has 4 channels, shift 3"):
        ScaleShift({("mid_block", 1): (np.ones(4), np.zeros(3))})
    with pytest.raises(AttributeError):
        s.scale_shift._entries = {}


def test_for_steps_drops_the_scale_shift():
    s = load_schedule(GOLDEN / "v2_scale_shift.yaml")
    with pytest.raises(cs.ScheduleError, match="hand-made mask"):
        s.for_steps(8)
