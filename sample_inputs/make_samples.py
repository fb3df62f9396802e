"""Regenerate the sample input files from the built-in sandbox's default users.

The samples refer to users of ``pcxbatch sandbox`` with its defaults (200 users, seed 0), so the
jobs in ``jobs/`` can be run with ``--sandbox`` and meet real users, and every kind of bad row a
spreadsheet brings along. Run from the repository root::

    python sample_inputs/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import xlsxwriter

from pcxbatch.sandbox.users import seed_users

HERE = Path(__file__).resolve().parent


def pick(users: list[dict[str, object]], status: str, n: int, skip: int = 0) -> list[str]:
    ids = [str(u["user_id"]) for u in users if u["status"] == status]
    return ids[skip : skip + n]


def sanctions_hits(users: list[dict[str, object]]) -> None:
    """A screening export: UTF-8 with BOM, commas, stray spaces, a blank row, bad rows."""
    active = pick(users, "active", 24)
    inactive = pick(users, "inactive", 3)
    lines = ["User ID,Match score,Screening list,Case ref"]
    for i, uid in enumerate(active[:12]):
        lines.append(f"{uid},{0.91 + i / 200:.3f},OFAC SDN,CASE-{4100 + i}")
    lines.append(f"  {active[12]}  , 0.930 ,UN Consolidated,CASE-4190")  # stray spaces
    lines.extend(f"{uid},0.972,EU Consolidated,CASE-{4200 + i}" for i, uid in enumerate(inactive))
    lines.append(",,,")  # an empty row in the middle
    lines.append("00000000-0000-4000-8000-000000000000,0.880,OFAC SDN,CASE-4300")  # unknown user
    lines.append("1.23457E+14,0.901,OFAC SDN,CASE-4301")  # an ID Excel turned into a number
    lines.append("../admin,0.990,OFAC SDN,CASE-4302")  # not a user ID
    lines.append(f"{active[0]},0.950,UN Consolidated,CASE-4303")  # the same user again
    lines.append(",0.800,OFAC SDN,CASE-4304")  # no user ID at all
    lines.extend(f"{uid},0.94,OFAC SDN,CASE-{4400 + i}" for i, uid in enumerate(active[13:24]))
    lines.extend(["", ""])  # blank trailing rows, as exports often have
    data = "\r\n".join(lines).encode("utf-8-sig")
    (HERE / "sanctions_hits.csv").write_bytes(data)


def kyc_review(users: list[dict[str, object]]) -> None:
    """A KYC review workbook: a notes sheet first, the outcomes on sheet 'Outcomes'."""
    path = HERE / "kyc_review.xlsx"
    book = xlsxwriter.Workbook(str(path))
    notes = book.add_worksheet("Notes")
    notes.write_string(0, 0, "KYC review batch 2026-11, reviewed by the onboarding team.")
    sheet = book.add_worksheet("Outcomes")
    sheet.write_row(0, 0, ["userId", "New Status", "Reason", "Reviewer"])
    rows: list[tuple[str | int, str, str]] = []
    for uid in pick(users, "pending_verification", 8):
        rows.append((uid, "Active", "Documents verified"))
    for uid in pick(users, "pending_verification", 4, skip=8):
        rows.append((uid, "Rejected", "Document forged"))
    for uid in pick(users, "not_verified", 4):
        rows.append((uid, "Pending Verification", "Resubmitted ID"))
    for uid in pick(users, "active", 3, skip=40):
        rows.append((uid, "not_verified", "Address proof expired"))
    rows.append((pick(users, "active", 1, skip=50)[0], "approved", "Typo in the status"))
    rows.append((pick(users, "active", 1, skip=51)[0], "inactive", "Account closed at request"))
    rows.append((4471982, "Active", "Legacy numeric ID"))  # a number cell, no such user
    r = 1
    for uid, status, reason in rows:
        if isinstance(uid, int):
            sheet.write_number(r, 0, uid)
        else:
            sheet.write_string(r, 0, uid)
        sheet.write_string(r, 1, status)
        sheet.write_string(r, 2, reason)
        sheet.write_string(r, 3, "a.reviewer")
        r += 1
    # A reason built by a formula: read as its cached value, never evaluated.
    uid = pick(users, "pending_verification", 1, skip=12)[0]
    sheet.write_string(r, 0, uid)
    sheet.write_string(r, 1, "Active")
    sheet.write_formula(r, 2, '="Verified on "&"2026-11-20"', None, "Verified on 2026-11-20")
    sheet.write_string(r, 3, "a.reviewer")
    book.close()


def fraud_ring(users: list[dict[str, object]]) -> None:
    """A nightly fraud export: Windows-1252, ';' separated, an action column."""
    lines = ["user_id;action;reason;updated_by"]
    for uid in pick(users, "active", 10, skip=60):
        lines.append(f"{uid};deactivate;Fraud ring FR-2211 (Müller case);fraud-ops")
    for uid in pick(users, "rejected", 2):
        lines.append(f"{uid};deactivate;Fraud ring FR-2211;fraud-ops")
    lines.append(f"{pick(users, 'active', 1, skip=70)[0]};freeze;Unknown action;fraud-ops")
    (HERE / "fraud_ring.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))


if __name__ == "__main__":
    population = seed_users(200, 0)  # `pcxbatch sandbox` defaults
    sanctions_hits(population)
    kyc_review(population)
    fraud_ring(population)
