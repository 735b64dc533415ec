"""Writer for the SIGKILL test: commits records as fast as it can and prints each commit.

Usage: python durability_writer.py DATA_DIR FIRST_NUMBER. Prints "ready", then one line with
the number of every transaction after it committed. Each transaction writes a questionnaire
whose first item is its number, for odd numbers a risk flag pointing at it, every third an
edit of an earlier questionnaire, and an audit entry: all or nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from appliance.config import Settings
from appliance.store import open_store


def main() -> None:
    data_dir, first = Path(sys.argv[1]), int(sys.argv[2])
    store = open_store(Settings(data_dir=data_dir, hostname="writer"))
    patient = store.Patient.get()
    earlier = store.QuestionnaireResponse.select().order_by(store.QuestionnaireResponse.id)
    previous = earlier.first()
    os.write(1, b"ready\n")
    for n in range(first, first + 1_000_000):
        items = [n] + [n % 4] * 8
        with store.transaction():
            answer = store.QuestionnaireResponse.create(
                patient=patient, kind="PHQ9", items=items, score=sum(items),
                severity="x" * (n % 300),
            )
            if n % 2:
                store.RiskFlag.create(patient=patient, source=answer, reason=f"flag {n}")
            if n % 3 == 0 and previous is not None:
                previous.severity = f"edited by {n}"
                previous.save()
            store.audit("system", "record.create", f"questionnaire_response/{answer.id}")
        previous = answer
        os.write(1, f"{n}\n".encode())


if __name__ == "__main__":
    main()
