import DXAcquisition
import Foundation
import GRDB

/// An exam's results as the daemon published them (at the end of the exam, after a
/// correction): what the DICOM service builds its objects from, in order.
public struct PublishedResults: Sendable, Equatable {
    public var id: Int64
    public var examID: Int64
    /// 1 for the exam's first results, 2 after the first correction, ...
    public var revision: Int
    public var results: ExamResults
    public var at: Date
}

/// What became of one object on an association, for the queue.
public enum SendOutcome: Sendable, Equatable {
    /// Answered success; a warning's words kept.
    case sent(note: String?)
    /// To be tried again at the given time.
    case retry(error: String, at: Date)
    /// Refused for good (DimseStatus.isPermanent).
    case failed(error: String)
}

extension ExamStore {
    static func registerDicomMigrations(_ m: inout DatabaseMigrator) {
        m.registerMigration("v11: published results and the DICOM service's queue") { db in
            try db.create(table: "exam_result") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("exam_id", .integer).notNull().references("exam").indexed()
                t.column("results", .text).notNull()
                t.column("at", .double).notNull()
                // Set by the DICOM service when it has queued the objects, or why it cannot.
                t.column("dicom_built_at", .double)
                t.column("dicom_error", .text)
            }
            // The DICOM service looks for unbuilt results every round: an index over those
            // only, so that the look does not read every row's results.
            try db.execute(sql: "CREATE INDEX exam_result_unbuilt ON exam_result(id) WHERE dicom_built_at IS NULL")
            try db.create(table: "dicom_object") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("exam_id", .integer).notNull().references("exam").indexed()
                t.column("result_id", .integer).notNull().references("exam_result")
                t.column("revision", .integer).notNull()
                t.column("name", .text).notNull()
                t.column("sop_class_uid", .text).notNull()
                t.column("sop_instance_uid", .text).notNull()
                t.column("path", .text).notNull()
                t.column("state", .text).notNull()
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("last_error", .text)
                t.column("created_at", .double).notNull()
                t.column("pending_since", .double).notNull()
                t.column("next_attempt_at", .double).notNull()
                t.column("sent_at", .double)
            }
            try db.create(index: "dicom_object_due", on: "dicom_object", columns: ["state", "next_attempt_at"])
            // When the store got DICOM: exams that ended before it are not sent unasked.
            try db.create(table: "dicom_meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .double).notNull()
            }
            try db.execute(sql: "INSERT INTO dicom_meta (key, value) VALUES ('since', ?)", arguments: [Date().timeIntervalSince1970])
        }
        m.registerMigration("v12: the exams' procedure steps at the RIS (MPPS)") { db in
            try db.create(table: "mpps") { t in
                t.primaryKey("exam_id", .integer).references("exam")
                t.column("sop_instance_uid", .text).notNull()
                t.column("state", .text).notNull()
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("last_error", .text)
                t.column("queued_at", .double).notNull()
                t.column("next_attempt_at", .double).notNull()
                t.column("created_at", .double)
                t.column("ended_at", .double)
                // Since when the step's current message has gone unaccepted (nil: none waits).
                t.column("waiting_since", .double)
            }
            try db.execute(sql: "CREATE INDEX mpps_due ON mpps(next_attempt_at) WHERE state IN ('create', 'in_progress')")
        }
        m.registerMigration("v13: storage commitment of sent objects") { db in
            try db.alter(table: "dicom_object") { t in
                t.add(column: "commit_transaction", .text)
                t.add(column: "commit_requested_at", .double)
                t.add(column: "committed_at", .double)
                t.add(column: "commit_error", .text)
            }
            try db.execute(sql: "CREATE INDEX dicom_object_uncommitted ON dicom_object(id) WHERE state = 'sent' AND committed_at IS NULL")
            try db.create(index: "dicom_object_transaction", on: "dicom_object", columns: ["commit_transaction"])
        }
    }

    // MARK: The exam's UIDs

    /// The UID root and station identity the exam's objects are named under: the ones kept
    /// when the DICOM service first named the exam, or `current` kept now. Every revision,
    /// the procedure step and every resend then name the exam alike, whatever the
    /// configuration says later (docs/dicom-conformance.md, "UIDs").
    public func examUIDBase(examID: Int64, current: (root: String?, station: String), at: Date) throws -> (root: String?, station: String) {
        try dbWrite { db in
            try db.execute(sql: "INSERT OR IGNORE INTO dicom_exam (exam_id, uid_root, uid_station, at) VALUES (?, ?, ?, ?)",
                           arguments: [examID, current.root, current.station, at.timeIntervalSince1970])
            guard let row = try Row.fetchOne(db, sql: "SELECT uid_root, uid_station FROM dicom_exam WHERE exam_id = ?", arguments: [examID]) else {
                return current
            }
            return (row["uid_root"], row["uid_station"])
        }
    }

    // MARK: The daemon's side

    /// Keeps the exam's results as they are now, for the DICOM service; returns the revision.
    @discardableResult
    public func publishResults(examID: Int64, results: ExamResults, at: Date) throws -> Int {
        let text = String(decoding: try JSONEncoder().encode(results), as: UTF8.self)
        return try dbWrite { db in
            try db.execute(sql: "INSERT INTO exam_result (exam_id, results, at) VALUES (?, ?, ?)", arguments: [examID, text, at.timeIntervalSince1970])
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exam_result WHERE exam_id = ?", arguments: [examID]) ?? 1
        }
    }

    public func unpublishedExams() throws -> [Int64] {
        try dbRead { db in
            try Int64.fetchAll(db, sql: """
                SELECT id FROM exam WHERE state IN ('completed', 'aborted') AND ended_at >= (SELECT value FROM dicom_meta WHERE key = 'since')
                AND NOT EXISTS (SELECT 1 FROM exam_result r WHERE r.exam_id = exam.id) ORDER BY id
                """)
        }
    }

    public func unbuiltResults(examID: Int64?) throws -> [UnbuiltResults] {
        try dbRead { db in
            try Row.fetchAll(db, sql: """
                SELECT r.exam_id, r.at, r.dicom_error,
                       (SELECT COUNT(*) FROM exam_result p WHERE p.exam_id = r.exam_id AND p.id <= r.id) AS revision
                FROM exam_result r WHERE r.dicom_built_at IS NULL AND (? IS NULL OR r.exam_id = ?) ORDER BY r.id
                """, arguments: [examID, examID]).map { row in
                UnbuiltResults(examID: row["exam_id"], revision: row["revision"], publishedAt: Date(timeIntervalSince1970: row["at"]),
                               error: row["dicom_error"])
            }
        }
    }

    // MARK: The DICOM service's side

    /// Published results the DICOM service has not yet turned into objects (nor given up
    /// on), oldest first.
    public func resultsToBuild() throws -> [PublishedResults] {
        try dbRead { db in
            try Row.fetchAll(db, sql: """
                SELECT r.id, r.exam_id, r.results, r.at,
                       (SELECT COUNT(*) FROM exam_result p WHERE p.exam_id = r.exam_id AND p.id <= r.id) AS revision
                FROM exam_result r WHERE r.dicom_built_at IS NULL AND r.dicom_error IS NULL ORDER BY r.id
                """).map { row in
                let text: String = row["results"]
                return PublishedResults(id: row["id"], examID: row["exam_id"], revision: row["revision"],
                                        results: try JSONDecoder().decode(ExamResults.self, from: Data(text.utf8)),
                                        at: Date(timeIntervalSince1970: row["at"]))
            }
        }
    }

    /// The published results `resultID` (to build an object's file again).
    public func publishedResults(_ resultID: Int64) throws -> PublishedResults? {
        try dbRead { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT r.id, r.exam_id, r.results, r.at,
                       (SELECT COUNT(*) FROM exam_result p WHERE p.exam_id = r.exam_id AND p.id <= r.id) AS revision
                FROM exam_result r WHERE r.id = ?
                """, arguments: [resultID]) else { return nil }
            let text: String = row["results"]
            return PublishedResults(id: row["id"], examID: row["exam_id"], revision: row["revision"],
                                    results: try JSONDecoder().decode(ExamResults.self, from: Data(text.utf8)), at: Date(timeIntervalSince1970: row["at"]))
        }
    }

    /// Queues the objects built from published results `resultID`, in one transaction with
    /// the mark that they are built (a service killed half-way builds them again), and
    /// supersedes what earlier revisions of the exam still had waiting: a correction's
    /// objects replace the uncorrected ones that were not sent. `send` false: kept `local`
    /// (no storage peer), for export.
    public func queueObjects(resultID: Int64, examID: Int64, revision: Int,
                             objects: [(name: String, sopClassUID: String, sopInstanceUID: String, path: String)], send: Bool = true, at: Date) throws {
        try dbWrite { db in
            try db.execute(sql: "UPDATE dicom_object SET state = 'superseded' WHERE exam_id = ? AND revision < ? AND state IN ('pending', 'failed', 'local')",
                           arguments: [examID, revision])
            for o in objects {
                try db.execute(sql: """
                    INSERT INTO dicom_object (exam_id, result_id, revision, name, sop_class_uid, sop_instance_uid, path, state, attempts,
                                              created_at, pending_since, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
                    """, arguments: [examID, resultID, revision, o.name, o.sopClassUID, o.sopInstanceUID, o.path, send ? "pending" : "local",
                                     at.timeIntervalSince1970, at.timeIntervalSince1970, at.timeIntervalSince1970])
            }
            try db.execute(sql: "UPDATE exam_result SET dicom_built_at = ? WHERE id = ?", arguments: [at.timeIntervalSince1970, resultID])
        }
    }

    /// Results whose objects cannot be built (a scan file gone): said, not tried again until
    /// a service engineer's resend.
    public func markBuildFailed(resultID: Int64, error: String) throws {
        try dbWrite { db in try db.execute(sql: "UPDATE exam_result SET dicom_error = ? WHERE id = ?", arguments: [error, resultID]) }
    }

    /// Pending objects due at `now`, in the order they were queued.
    public func dueObjects(now: Date, limit: Int = 100) throws -> [OutboxObject] {
        try dbRead { db in
            try Row.fetchAll(db, sql: "SELECT * FROM dicom_object WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                             arguments: [now.timeIntervalSince1970, limit]).map(Self.outboxObject)
        }
    }

    /// The queue: one exam's objects; or the newest 500 and every one not sent, in order.
    public func outbox(examID: Int64?) throws -> [OutboxObject] {
        try dbRead { db in
            if let examID {
                return try Row.fetchAll(db, sql: "SELECT * FROM dicom_object WHERE exam_id = ? ORDER BY id", arguments: [examID]).map(Self.outboxObject)
            }
            return try Row.fetchAll(db, sql: """
                SELECT * FROM dicom_object WHERE state IN ('pending', 'failed') OR id > (SELECT COALESCE(MAX(id), 0) - 500 FROM dicom_object) ORDER BY id
                """).map(Self.outboxObject)
        }
    }

    /// What an association did with each object, recorded in one transaction.
    public func record(_ outcomes: [(id: Int64, outcome: SendOutcome)], at: Date) throws {
        try dbWrite { db in
            for (id, outcome) in outcomes {
                switch outcome {
                case .sent(let note):
                    try db.execute(sql: "UPDATE dicom_object SET state = 'sent', attempts = attempts + 1, sent_at = ?, last_error = ? WHERE id = ?",
                                   arguments: [at.timeIntervalSince1970, note, id])
                case .retry(let error, let retryAt):
                    try db.execute(sql: "UPDATE dicom_object SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                                   arguments: [error, retryAt.timeIntervalSince1970, id])
                case .failed(let error):
                    try db.execute(sql: "UPDATE dicom_object SET state = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
                                   arguments: [error, id])
                }
            }
        }
    }

    /// A service engineer's resend: the exam's objects (or one) pending again and due now,
    /// and its results that could not be built tried again. Superseded objects stay so.
    /// Returns how many objects and results.
    @discardableResult
    public func resend(examID: Int64, objectID: Int64?, at: Date) throws -> Int {
        try dbWrite { db in
            let t = at.timeIntervalSince1970
            if let objectID {
                try db.execute(sql: """
                    UPDATE dicom_object SET state = 'pending', pending_since = ?, next_attempt_at = ? WHERE exam_id = ? AND id = ? AND state != 'superseded'
                    """, arguments: [t, t, examID, objectID])
                return db.changesCount
            }
            try db.execute(sql: "UPDATE dicom_object SET state = 'pending', pending_since = ?, next_attempt_at = ? WHERE exam_id = ? AND state != 'superseded'",
                           arguments: [t, t, examID])
            let objects = db.changesCount
            try db.execute(sql: "UPDATE exam_result SET dicom_error = NULL WHERE exam_id = ? AND dicom_built_at IS NULL AND dicom_error IS NOT NULL",
                           arguments: [examID])
            let results = db.changesCount
            return objects + results + (try resendStep(db, examID: examID, at: at))
        }
    }

    // MARK: Storage commitment

    /// Sent objects whose commitment has not been asked for, or was asked for before `askedBefore`
    /// and never answered (asked again), in order.
    public func objectsToCommit(askedBefore: Date, limit: Int) throws -> [OutboxObject] {
        try dbRead { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM dicom_object WHERE state = 'sent' AND committed_at IS NULL
                AND (commit_transaction IS NULL OR commit_requested_at < ?) ORDER BY id LIMIT ?
                """, arguments: [askedBefore.timeIntervalSince1970, limit]).map(Self.outboxObject)
        }
    }

    /// The PACS received the request `transaction` for the objects `ids`.
    public func commitmentRequested(_ ids: [Int64], transaction: String, at: Date) throws {
        try dbWrite { db in
            for id in ids {
                try db.execute(sql: "UPDATE dicom_object SET commit_transaction = ?, commit_requested_at = ?, commit_error = NULL WHERE id = ?",
                               arguments: [transaction, at.timeIntervalSince1970, id])
            }
        }
    }

    /// A commitment result: the committed objects marked; the failed ones pending again (sent
    /// again, then asked again), with the reason. Only objects of that transaction count;
    /// returns how many matched.
    @discardableResult
    public func recordCommitment(transaction: String, committed: [String], failed: [(instance: String, reason: String)], at: Date) throws -> Int {
        try dbWrite { db in
            var matched = 0
            for uid in committed {
                try db.execute(sql: "UPDATE dicom_object SET committed_at = ?, commit_error = NULL WHERE commit_transaction = ? AND sop_instance_uid = ?",
                               arguments: [at.timeIntervalSince1970, transaction, uid])
                matched += db.changesCount
            }
            for f in failed {
                try db.execute(sql: """
                    UPDATE dicom_object SET state = 'pending', pending_since = ?, next_attempt_at = ?, commit_transaction = NULL, commit_requested_at = NULL,
                    commit_error = ?, last_error = ? WHERE commit_transaction = ? AND sop_instance_uid = ? AND state = 'sent'
                    """, arguments: [at.timeIntervalSince1970, at.timeIntervalSince1970, f.reason, "storage commitment refused: \(f.reason)",
                                     transaction, f.instance])
                matched += db.changesCount
            }
            return matched
        }
    }

    // MARK: Procedure steps (MPPS)

    /// From now on, exams that start are announced to the RIS: kept the first time the DICOM
    /// service runs with an MPPS peer, so that exams from before are never announced late.
    public func announceStepsFrom(_ at: Date) throws {
        try dbWrite { db in
            try db.execute(sql: "INSERT OR IGNORE INTO dicom_meta (key, value) VALUES ('mpps_since', ?)", arguments: [at.timeIntervalSince1970])
        }
    }

    /// Exams started since steps are announced that have no step yet, in order.
    public func startedExamsWithoutStep() throws -> [Int64] {
        try dbRead { db in
            try Int64.fetchAll(db, sql: """
                SELECT id FROM exam WHERE started_at IS NOT NULL AND started_at >= (SELECT value FROM dicom_meta WHERE key = 'mpps_since')
                AND NOT EXISTS (SELECT 1 FROM mpps WHERE mpps.exam_id = exam.id) ORDER BY id
                """)
        }
    }

    /// A step to announce: its N-CREATE due now. Once per exam.
    public func addStep(examID: Int64, sopInstanceUID: String, at: Date) throws {
        try dbWrite { db in
            try db.execute(sql: "INSERT OR IGNORE INTO mpps (exam_id, sop_instance_uid, state, queued_at, next_attempt_at) VALUES (?, ?, 'create', ?, ?)",
                           arguments: [examID, sopInstanceUID, at.timeIntervalSince1970, at.timeIntervalSince1970])
        }
    }

    /// Steps whose next message is due: N-CREATEs, and steps in progress (whose N-SET goes when
    /// their exam has ended and its objects are built).
    /// Steps with a message due: a start not yet announced, or an end whose exam has ended
    /// (a step in progress waits for its exam without a read of it each round).
    public func dueSteps(now: Date) throws -> [PerformedStepRecord] {
        try dbRead { db in
            try Row.fetchAll(db, sql: """
                SELECT mpps.* FROM mpps JOIN exam ON exam.id = mpps.exam_id
                WHERE mpps.next_attempt_at <= ?
                  AND (mpps.state = 'create' OR (mpps.state = 'in_progress' AND exam.state IN ('completed', 'aborted')))
                ORDER BY mpps.exam_id
                """, arguments: [now.timeIntervalSince1970]).map(Self.step)
        }
    }

    public func performedSteps(examID: Int64?) throws -> [PerformedStepRecord] {
        try dbRead { db in
            if let examID { return try Row.fetchAll(db, sql: "SELECT * FROM mpps WHERE exam_id = ?", arguments: [examID]).map(Self.step) }
            return try Row.fetchAll(db, sql: """
                SELECT * FROM mpps WHERE state IN ('create', 'in_progress', 'failed')
                OR exam_id > (SELECT COALESCE(MAX(exam_id), 0) - 100 FROM mpps) ORDER BY exam_id
                """).map(Self.step)
        }
    }

    /// What became of a step's message: its new state (accepted), or a retry at `retryAt`, or
    /// a failure for good.
    public func recordStep(examID: Int64, state: PerformedStepRecord.State, error: String?, retryAt: Date?, at: Date) throws {
        try dbWrite { db in
            let t = at.timeIntervalSince1970
            switch state {
            case .inProgress where retryAt == nil:
                try db.execute(sql: """
                    UPDATE mpps SET state = 'in_progress', attempts = attempts + 1, last_error = ?, created_at = ?, next_attempt_at = ?,
                    waiting_since = NULL WHERE exam_id = ?
                    """, arguments: [error, t, t, examID])
            case .completed, .discontinued:
                try db.execute(sql: "UPDATE mpps SET state = ?, attempts = attempts + 1, last_error = ?, ended_at = ?, waiting_since = NULL WHERE exam_id = ?",
                               arguments: [state.rawValue, error, t, examID])
            default:
                // Not accepted: waiting since the first refusal of this message.
                try db.execute(sql: """
                    UPDATE mpps SET state = ?, attempts = attempts + 1, last_error = ?, next_attempt_at = ?, waiting_since = COALESCE(waiting_since, ?)
                    WHERE exam_id = ?
                    """, arguments: [state.rawValue, error, (retryAt ?? at).timeIntervalSince1970, t, examID])
            }
        }
    }

    /// The exam's newest published results once the DICOM service has built every revision
    /// published so far (or given up on them): what its step ends with, and the objects that
    /// go to the PACS (neither superseded by a later revision nor refused for good). nil while
    /// a revision waits to be built.
    public func builtResults(examID: Int64) throws -> (results: PublishedResults, objects: [OutboxObject])? {
        let newest: Int64? = try dbRead { db in
            let waiting = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM exam_result WHERE exam_id = ? AND dicom_built_at IS NULL AND dicom_error IS NULL",
                                           arguments: [examID]) ?? 0
            guard waiting == 0 else { return nil }
            return try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM exam_result WHERE exam_id = ?", arguments: [examID])
        }
        guard let newest, let published = try publishedResults(newest) else { return nil }
        let objects = try dbRead { db in
            try Row.fetchAll(db, sql: "SELECT * FROM dicom_object WHERE exam_id = ? AND state NOT IN ('superseded', 'failed') ORDER BY id",
                             arguments: [examID]).map(Self.outboxObject)
        }
        return (published, objects)
    }

    /// A service engineer's resend of an exam's step that failed: announced again from the
    /// start (an N-CREATE the RIS already has is answered 0111, which counts as accepted).
    func resendStep(_ db: Database, examID: Int64, at: Date) throws -> Int {
        try db.execute(sql: "UPDATE mpps SET state = 'create', next_attempt_at = ?, waiting_since = NULL WHERE exam_id = ? AND state = 'failed'",
                       arguments: [at.timeIntervalSince1970, examID])
        return db.changesCount
    }

    static func step(_ row: Row) -> PerformedStepRecord {
        let state: String = row["state"]
        return PerformedStepRecord(examID: row["exam_id"], sopInstanceUID: row["sop_instance_uid"], state: PerformedStepRecord.State(rawValue: state) ?? .failed,
                                   attempts: row["attempts"], lastError: row["last_error"], queuedAt: Date(timeIntervalSince1970: row["queued_at"]),
                                   nextAttemptAt: Date(timeIntervalSince1970: row["next_attempt_at"]),
                                   createdAt: (row["created_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                                   endedAt: (row["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                                   waitingSince: (row["waiting_since"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    static func outboxObject(_ row: Row) -> OutboxObject {
        let state: String = row["state"]
        return OutboxObject(id: row["id"], examID: row["exam_id"], revision: row["revision"], name: row["name"], sopClassUID: row["sop_class_uid"],
                            sopInstanceUID: row["sop_instance_uid"], path: row["path"], state: OutboxObject.State(rawValue: state) ?? .pending,
                            attempts: row["attempts"], lastError: row["last_error"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                            pendingSince: Date(timeIntervalSince1970: row["pending_since"]),
                            nextAttemptAt: Date(timeIntervalSince1970: row["next_attempt_at"]),
                            sentAt: (row["sent_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                            commitmentRequestedAt: (row["commit_requested_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                            committedAt: (row["committed_at"] as Double?).map(Date.init(timeIntervalSince1970:)), commitmentError: row["commit_error"])
    }

    /// The result_id of an object, to build its file again.
    public func resultID(ofObject id: Int64) throws -> Int64? {
        try dbRead { db in try Int64.fetchOne(db, sql: "SELECT result_id FROM dicom_object WHERE id = ?", arguments: [id]) }
    }
}
