"""Record store throughput: durable inserts and reads of a PHQ-9 record, encrypted vs plain.

Encrypted: `appliance.store` (AES-256-GCM fields, blind index, outbox entry written in the same
transaction, one IMMEDIATE transaction and one fsync per record). Plain: the same columns in
plain peewee on the same pragmas (WAL, synchronous=FULL), one transaction per record, no
encryption and no outbox. Both run in this process, alternating in rounds so disk and CPU
noise hit both alike. Reads fetch a random record by id and use its answers and score.
Last line: one JSON object.

    python benchmarks/store.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peewee import (  # noqa: E402
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)

from appliance.config import Settings  # noqa: E402
from appliance.store import open_store  # noqa: E402
from appliance.store.database import PRAGMAS  # noqa: E402
from appliance.store.models import new_record_id, utcnow  # noqa: E402

ANSWERS = [2, 1, 3, 0, 1, 2, 0, 1, 0]


class PlainPatient(Model):
    id = CharField(primary_key=True, default=new_record_id)
    display_name = TextField()


class PlainResponse(Model):
    """The questionnaire schema without encryption: answers as JSON text, score as integer."""

    id = CharField(primary_key=True, default=new_record_id)
    version = IntegerField(default=1)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    patient = ForeignKeyField(PlainPatient)
    kind = CharField()
    items = TextField()
    score = IntegerField()
    severity = TextField()


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records (CI smoke run)")
    args = parser.parse_args()
    per_round = 100 if args.quick else 500
    rounds = 2 if args.quick else 4
    reads = 1000 if args.quick else 10000

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Settings(data_dir=Path(tmp) / "enc", hostname="bench"))
        plain_db = SqliteDatabase(str(Path(tmp) / "plain.db"), pragmas=PRAGMAS)
        plain_db.bind([PlainPatient, PlainResponse])
        plain_db.create_tables([PlainPatient, PlainResponse])

        patient = store.Patient.create(display_name="Benchmark Patient")
        plain_patient = PlainPatient.create(display_name="Benchmark Patient")
        enc_ids: list[str] = []
        plain_ids: list[str] = []
        enc_s = plain_s = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(per_round):
                row = store.QuestionnaireResponse.create(
                    patient=patient, kind="PHQ9", items=ANSWERS, score=sum(ANSWERS),
                    severity="mild",
                )
                enc_ids.append(row.id)
            enc_s += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(per_round):
                with plain_db.atomic("IMMEDIATE"):
                    row = PlainResponse.create(
                        patient=plain_patient, kind="PHQ9", items=json.dumps(ANSWERS),
                        score=sum(ANSWERS), severity="mild",
                    )
                plain_ids.append(row.id)
            plain_s += time.perf_counter() - start

        rng = random.Random(7)
        start = time.perf_counter()
        for _ in range(reads):
            row = store.QuestionnaireResponse.get_by_id(rng.choice(enc_ids))
            assert sum(row.items) == row.score
        enc_read_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(reads):
            row = PlainResponse.get_by_id(rng.choice(plain_ids))
            assert sum(json.loads(row.items)) == row.score
        plain_read_s = time.perf_counter() - start

        store.close()
        plain_db.close()

    total = per_round * rounds
    enc_ins, plain_ins = _rate(total, enc_s), _rate(total, plain_s)
    enc_reads, plain_reads = _rate(reads, enc_read_s), _rate(reads, plain_read_s)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"durable inserts ({total} each, one transaction + fsync per record, {rounds} rounds):")
    print(f"  encrypted store (with outbox entry): {enc_ins:8.0f}/s")
    print(f"  plain peewee:                        {plain_ins:8.0f}/s")
    print(f"  ratio encrypted/plain:               {enc_ins / plain_ins:8.2f} (aim >= 0.5)")
    print(f"reads by id ({reads} each): encrypted {enc_reads:.0f}/s, plain {plain_reads:.0f}/s")
    print(f"peak RSS {rss_mb:.1f} MB")
    print(json.dumps({
        "encrypted_inserts_per_s": round(enc_ins, 1),
        "plain_inserts_per_s": round(plain_ins, 1),
        "ratio": round(enc_ins / plain_ins, 3),
        "encrypted_reads_per_s": round(enc_reads, 1),
        "plain_reads_per_s": round(plain_reads, 1),
        "read_ratio": round(enc_reads / plain_reads, 3),
        "rss_mb": round(rss_mb, 1),
        "records": total,
    }))


if __name__ == "__main__":
    main()
