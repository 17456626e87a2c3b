"""docs/plc-interface.md is generated from linegate/plc/interface.py and cannot drift from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from linegate.config.schema import PlcSection
from linegate.plc.interface import FIELDS, PLC_BLOCK, VISION_BLOCK
from linegate.plc.interface_doc import (
    Addresses,
    holding_register,
    modbus_address,
    render_for,
    render_interface_doc,
    s7_address,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "plc-interface.md"
REFERENCE = Addresses(register_base=0, db=100, byte_base=0)


def test_committed_doc_equals_the_renderer_output() -> None:
    """The committed document is exactly the render for register_base 0, DB 100, byte_base 0."""
    regenerate = "interface.py changed: run `linegate plc-interface > docs/plc-interface.md`"
    assert DOC.read_text() == render_interface_doc(REFERENCE), regenerate


def test_cli_prints_the_same_document() -> None:
    """`linegate plc-interface` prints the reference document and exits 0."""
    done = subprocess.run([sys.executable, "-m", "linegate", "plc-interface"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == render_interface_doc(REFERENCE)


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[1].startswith("`"):
            rows[cells[1].strip("`")] = cells
    return rows


def test_every_field_has_one_row_with_its_addresses_at_a_non_default_base() -> None:
    """Each field's row gives word, Modbus address and 4xxxx number, S7 DBW/DBD, type, writer and meaning."""
    a = Addresses(register_base=100, db=7, byte_base=10)
    rows = table_rows(render_interface_doc(a))
    assert set(rows) == {f.name for f in FIELDS}
    assert rows["vision_alive"][:7] == ["0", "`vision_alive`", "100", "40101", "DB7.DBW10", "u16 / WORD (UINT)",
                                        "linegate"]
    assert rows["part_id"][:5] == ["4-5", "`part_id`", "104-105", "40105-40106", "DB7.DBD18"]
    assert rows["ack_seq"][:7] == ["17", "`ack_seq`", "117", "40118", "DB7.DBW44", "u16 / WORD (UINT)", "plc"]
    assert rows["encoder"][2:5] == ["120-121", "40121-40122", "DB7.DBD50"]
    for f in FIELDS:
        assert rows[f.name][7] == f.meaning and rows[f.name][8] == f.when


@pytest.mark.parametrize(
    "address, number", [(0, "40001"), (16, "40017"), (9998, "49999"), (9999, "410000"), (65535, "465536")]
)
def test_holding_register_numbers(address: int, number: str) -> None:
    """0-based address N is 4xxxx number 40001+N, written with 6 digits (400001+N) above 9998."""
    assert holding_register(address) == number


def test_address_helpers_follow_the_field_width() -> None:
    """32-bit fields span two registers and use DBD; 16-bit ones one register and DBW."""
    wide = [f for f in FIELDS if f.kind == "u32"]
    assert wide and all(s7_address(f, 1, 0).startswith("DB1.DBD") for f in wide)
    assert all("-" in modbus_address(f, 0)[0] for f in wide)
    narrow = [f for f in VISION_BLOCK + PLC_BLOCK if f.kind != "u32"]
    assert all(s7_address(f, 1, 2).startswith("DB1.DBW") for f in narrow)


def test_required_sections_are_present() -> None:
    """The document covers function codes, word order, connect/stop/fault, ack/retry, alive, pulse map, checklist."""
    text = render_interface_doc(REFERENCE)
    for needed in ("FC3 Read Holding Registers", "FC16 Write Multiple Registers", "FC5 Write Single Coil",
                   "FC1 Read Coils", "## Byte and word order", "high word first", "## On connect", "## On stop",
                   "`fault_code` 4 (stopping)", "## On fault", "## Acknowledge and retry", "**act on a number once**",
                   "## Alive counters", "## Pulse mode map", "## PLC programmer's checklist"):
        assert needed in text, needed


def test_render_for_a_config_uses_its_addresses() -> None:
    """render_for takes register_base, coils, part-id registers, DB, byte_base and flag bytes from [plc]."""
    plc = PlcSection.model_validate({
        "protocol": "s7",
        "modbus": {"host": "10.0.0.1", "register_base": 200, "reject_coil": 3, "part_id_register": 50},
        "s7": {"host": "10.0.0.2", "db": 12, "byte_base": 4, "reject_byte": 60, "fault_byte": 61},
    })
    text = render_for(plc)
    rows = table_rows(text)
    assert rows["plc_alive"][2:5] == ["216", "40217", "DB12.DBW36"]
    assert "coil address 3 (0xxxx number 00004" in text
    assert "holding registers 50-51 (40051-40052" in text
    assert "DB12.DBB60 (`plc.s7.reject_byte`)" in text and "DB12.DBB61" in text
    assert "not set (`plc.modbus.fault_coil`)" in text
