"""The schema as first released (v1), frozen: migrations build on it, never edit it."""

V1_STATEMENTS: tuple[str, ...] = (
    (
        'CREATE TABLE "user" ("id" INTEGER NOT NULL PRIMARY KEY, "username" VARCHAR(255) NOT '
        'NULL, "role" VARCHAR(255) NOT NULL CHECK (role IN (\'clinician\', \'admin\', '
        '\'technician\')), "password_hash" TEXT NOT NULL, "active" INTEGER NOT NULL, '
        '"created_at" DATETIME NOT NULL)'
    ),
    (
        'CREATE UNIQUE INDEX "user_username" ON "user" ("username")'
    ),
    (
        'CREATE TABLE "group_session" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" '
        'INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"title" BLOB NOT NULL, "starts_at" DATETIME NOT NULL, "facilitator_id" INTEGER NOT '
        'NULL, "capacity" INTEGER NOT NULL, "keep_chat" INTEGER NOT NULL, "state" '
        "VARCHAR(255) NOT NULL CHECK (state IN ('scheduled', 'live', 'ended', 'cancelled')), "
        '"locked" INTEGER NOT NULL, "join_code_index" VARCHAR(32), "invite_index" '
        'VARCHAR(32), FOREIGN KEY ("facilitator_id") REFERENCES "user" ("id") ON DELETE '
        'RESTRICT)'
    ),
    (
        'CREATE INDEX "group_session_facilitator_id" ON "group_session" ("facilitator_id")'
    ),
    (
        'CREATE INDEX "group_session_join_code_index" ON "group_session" ("join_code_index")'
    ),
    (
        'CREATE INDEX "group_session_invite_index" ON "group_session" ("invite_index")'
    ),
    (
        'CREATE TABLE "patient" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" INTEGER NOT'
        ' NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, "code" '
        'VARCHAR(255) NOT NULL, "display_name" BLOB NOT NULL, "identity" BLOB, "name_index" '
        'VARCHAR(32), "active" INTEGER NOT NULL)'
    ),
    (
        'CREATE UNIQUE INDEX "patient_code" ON "patient" ("code")'
    ),
    (
        'CREATE INDEX "patient_name_index" ON "patient" ("name_index")'
    ),
    (
        'CREATE TABLE "attendance" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" INTEGER '
        'NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"session_id" VARCHAR(36) NOT NULL, "patient_id" VARCHAR(36) NOT NULL, "display_name"'
        ' BLOB, "status" VARCHAR(255) NOT NULL CHECK (status IN (\'waiting\', \'admitted\', '
        '\'left\', \'removed\', \'absent\')), "joined_at" DATETIME NOT NULL, "left_at" DATETIME, '
        'FOREIGN KEY ("session_id") REFERENCES "group_session" ("id") ON DELETE CASCADE, '
        'FOREIGN KEY ("patient_id") REFERENCES "patient" ("id") ON DELETE CASCADE)'
    ),
    (
        'CREATE INDEX "attendance_session_id" ON "attendance" ("session_id")'
    ),
    (
        'CREATE INDEX "attendance_patient_id" ON "attendance" ("patient_id")'
    ),
    (
        'CREATE UNIQUE INDEX "attendance_session_id_patient_id" ON "attendance" '
        '("session_id", "patient_id")'
    ),
    (
        'CREATE TABLE "audit_log" ("id" INTEGER NOT NULL PRIMARY KEY, "at" DATETIME NOT NULL,'
        ' "actor" VARCHAR(255) NOT NULL, "action" VARCHAR(255) NOT NULL, "target" '
        'VARCHAR(255) NOT NULL, "prev_hash" VARCHAR(255) NOT NULL, "hash" VARCHAR(255) NOT '
        'NULL)'
    ),
    (
        'CREATE TABLE "chat_message" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" '
        'INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"session_id" VARCHAR(36) NOT NULL, "sender" VARCHAR(255) NOT NULL, "text" BLOB NOT '
        'NULL, FOREIGN KEY ("session_id") REFERENCES "group_session" ("id") ON DELETE '
        'CASCADE)'
    ),
    (
        'CREATE INDEX "chat_message_session_id" ON "chat_message" ("session_id")'
    ),
    (
        'CREATE TABLE "consent" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" INTEGER NOT'
        ' NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, "patient_id" '
        'VARCHAR(36) NOT NULL, "session_id" VARCHAR(36), "scope" BLOB NOT NULL, "granted" '
        'BLOB NOT NULL, "details" BLOB, "recorded_by_id" INTEGER, FOREIGN KEY ("patient_id") '
        'REFERENCES "patient" ("id") ON DELETE CASCADE, FOREIGN KEY ("session_id") REFERENCES'
        ' "group_session" ("id") ON DELETE SET NULL, FOREIGN KEY ("recorded_by_id") '
        'REFERENCES "user" ("id") ON DELETE SET NULL)'
    ),
    (
        'CREATE INDEX "consent_patient_id" ON "consent" ("patient_id")'
    ),
    (
        'CREATE INDEX "consent_session_id" ON "consent" ("session_id")'
    ),
    (
        'CREATE INDEX "consent_recorded_by_id" ON "consent" ("recorded_by_id")'
    ),
    (
        'CREATE TABLE "outbox_entry" ("id" INTEGER NOT NULL PRIMARY KEY, "record_type" '
        'VARCHAR(255) NOT NULL, "record_id" VARCHAR(255) NOT NULL, "version" INTEGER NOT '
        'NULL, "lane" INTEGER NOT NULL, "state" VARCHAR(255) NOT NULL, "attempts" INTEGER NOT'
        ' NULL, "next_attempt_at" REAL NOT NULL, "leased_until" REAL, "enqueued_at" REAL NOT '
        'NULL, "delivered_at" REAL, "last_error" VARCHAR(200))'
    ),
    (
        'CREATE INDEX "outbox_entry_record_id" ON "outbox_entry" ("record_id")'
    ),
    (
        'CREATE UNIQUE INDEX "outbox_entry_record_type_record_id" ON "outbox_entry" '
        '("record_type", "record_id")'
    ),
    (
        'CREATE INDEX "outbox_entry_state_lane_enqueued_at" ON "outbox_entry" ("state", '
        '"lane", "enqueued_at")'
    ),
    (
        'CREATE TABLE "questionnaire_response" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, '
        '"version" INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME '
        'NOT NULL, "patient_id" VARCHAR(36) NOT NULL, "session_id" VARCHAR(36), "kind" '
        'VARCHAR(255) NOT NULL CHECK (kind IN (\'PHQ9\', \'GAD7\')), "items" BLOB NOT NULL, '
        '"score" BLOB NOT NULL, "severity" BLOB, FOREIGN KEY ("patient_id") REFERENCES '
        '"patient" ("id") ON DELETE CASCADE, FOREIGN KEY ("session_id") REFERENCES '
        '"group_session" ("id") ON DELETE SET NULL)'
    ),
    (
        'CREATE INDEX "questionnaire_response_patient_id" ON "questionnaire_response" '
        '("patient_id")'
    ),
    (
        'CREATE INDEX "questionnaire_response_session_id" ON "questionnaire_response" '
        '("session_id")'
    ),
    (
        'CREATE TABLE "risk_flag" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" INTEGER '
        'NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"patient_id" VARCHAR(36) NOT NULL, "source_id" VARCHAR(36), "raised_by_id" INTEGER, '
        '"reason" BLOB NOT NULL, "state" VARCHAR(255) NOT NULL CHECK (state IN (\'open\', '
        '\'referred\', \'closed\')), FOREIGN KEY ("patient_id") REFERENCES "patient" ("id") ON '
        'DELETE CASCADE, FOREIGN KEY ("source_id") REFERENCES "questionnaire_response" ("id")'
        ' ON DELETE SET NULL, FOREIGN KEY ("raised_by_id") REFERENCES "user" ("id") ON DELETE'
        ' SET NULL)'
    ),
    (
        'CREATE INDEX "risk_flag_patient_id" ON "risk_flag" ("patient_id")'
    ),
    (
        'CREATE INDEX "risk_flag_source_id" ON "risk_flag" ("source_id")'
    ),
    (
        'CREATE INDEX "risk_flag_raised_by_id" ON "risk_flag" ("raised_by_id")'
    ),
    (
        'CREATE TABLE "referral" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" INTEGER '
        'NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"patient_id" VARCHAR(36) NOT NULL, "risk_flag_id" VARCHAR(36), "referred_by_id" '
        'INTEGER, "details" BLOB NOT NULL, FOREIGN KEY ("patient_id") REFERENCES "patient" '
        '("id") ON DELETE CASCADE, FOREIGN KEY ("risk_flag_id") REFERENCES "risk_flag" ("id")'
        ' ON DELETE SET NULL, FOREIGN KEY ("referred_by_id") REFERENCES "user" ("id") ON '
        'DELETE SET NULL)'
    ),
    (
        'CREATE INDEX "referral_patient_id" ON "referral" ("patient_id")'
    ),
    (
        'CREATE INDEX "referral_risk_flag_id" ON "referral" ("risk_flag_id")'
    ),
    (
        'CREATE INDEX "referral_referred_by_id" ON "referral" ("referred_by_id")'
    ),
    (
        'CREATE TABLE "schema_version" ("version" INTEGER NOT NULL PRIMARY KEY, "applied_at" '
        'DATETIME NOT NULL)'
    ),
    (
        'CREATE TABLE "session_note" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" '
        'INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"session_id" VARCHAR(36), "patient_id" VARCHAR(36), "author_id" INTEGER NOT NULL, '
        '"text" BLOB NOT NULL, FOREIGN KEY ("session_id") REFERENCES "group_session" ("id") '
        'ON DELETE SET NULL, FOREIGN KEY ("patient_id") REFERENCES "patient" ("id") ON DELETE'
        ' CASCADE, FOREIGN KEY ("author_id") REFERENCES "user" ("id") ON DELETE RESTRICT)'
    ),
    (
        'CREATE INDEX "session_note_session_id" ON "session_note" ("session_id")'
    ),
    (
        'CREATE INDEX "session_note_patient_id" ON "session_note" ("patient_id")'
    ),
    (
        'CREATE INDEX "session_note_author_id" ON "session_note" ("author_id")'
    ),
    (
        'CREATE TABLE "telemetry_event" ("id" VARCHAR(36) NOT NULL PRIMARY KEY, "version" '
        'INTEGER NOT NULL, "created_at" DATETIME NOT NULL, "updated_at" DATETIME NOT NULL, '
        '"kind" VARCHAR(255) NOT NULL, "data" BLOB NOT NULL)'
    ),
)
