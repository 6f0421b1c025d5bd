import DXAnalysis
import DXAcquisition
import DXClinical
import Foundation
import GRDB
import GRDBSQLite

/// The exam store: one SQLite database (`STATE/exams.sqlite`, WAL, synchronous FULL) with
/// patients, exams, every checklist answer (who and when), every scan attempt and every
/// warning. Migrations run at open, from the first version on; each write is one
/// transaction, on disk when the call returns, so a daemon killed at any moment restarts
/// with everything it had recorded.
public final class ExamStore: ExamRecorder {
    private let db: Guarded
    public let path: String

    /// How long a write waits for a lock another program holds (a backup, an `sqlite3` shell)
    /// before it fails with `StoreFailure.locked`. Short: the sequencer waits on it.
    public static let busyTimeout: TimeInterval = 0.5

    /// What SQLite has allocated in this process (sqlite3_memory_used): page caches, schemas,
    /// prepared statements.
    public static var sqliteMemoryBytes: Int { Int(clamping: sqlite3_memory_used()) }

    /// Of it, the page caches (SQLITE_STATUS_PAGECACHE_OVERFLOW: with no static page-cache
    /// buffer configured, every cache page comes from the heap and is counted here).
    public static var sqlitePageCacheBytes: Int {
        var current: sqlite3_int64 = 0, highest: sqlite3_int64 = 0
        guard sqlite3_status64(SQLITE_STATUS_PAGECACHE_OVERFLOW, &current, &highest, 0) == SQLITE_OK else { return 0 }
        return Int(clamping: current)
    }

    /// SQLite's memory in this process: a soft limit (sqlite3_soft_heap_limit64) that SQLite
    /// keeps by recycling cache pages, and may pass for a moment rather than fail. The
    /// database of a console's years is tens of MB; its hot pages fit (docs/RELIABILITY.md,
    /// "A clinic day").
    public static let sqliteMemoryLimit: Int64 = 8 << 20

    /// Sets the soft limit for this process: once, at the start of a program that keeps the
    /// store open all day (dexad, dexa-dicomd), not as a side effect of opening a store.
    public static func limitMemory() {
        sqlite3_soft_heap_limit64(sqliteMemoryLimit)
    }

    public init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(Self.busyTimeout)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        self.path = path
        let pool = try Guarded.explained(path) { try DatabasePool(path: path, configuration: config) }
        db = Guarded(pool: pool, path: path)
        try Guarded.explained(path) { try Self.migrator.migrate(pool) }
    }

    /// The pool, with SQLite's failures said in words the technologist and the service
    /// engineer can act on (`StoreFailure`).
    private struct Guarded: Sendable {
        let pool: DatabasePool
        let path: String

        func write<T>(_ updates: (Database) throws -> T) throws -> T { try Self.explained(path) { try pool.write(updates) } }
        func read<T>(_ value: (Database) throws -> T) throws -> T { try Self.explained(path) { try pool.read(value) } }

        static func explained<T>(_ path: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as DatabaseError { throw StoreFailure(e, path: path) }
        }
    }

    /// A write and a read with SQLite's failures said in words, for the store's other files.
    func dbWrite<T>(_ updates: (Database) throws -> T) throws -> T { try db.write(updates) }
    func dbRead<T>(_ value: (Database) throws -> T) throws -> T { try db.read(value) }

    /// The schema, one migration per version. Never edit a shipped migration: add one.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: patients, exams, checklist answers, scans, warnings") { db in
            try db.create(table: "patient") { t in
                t.primaryKey("id", .text)
                t.column("name", .text).notNull()
                t.column("sex", .text).notNull()
                t.column("birth_date", .text).notNull()
                t.column("ethnicity", .text)
            }
            try db.create(table: "exam") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("patient_id", .text).notNull().references("patient")
                t.column("referral", .text).notNull()
                t.column("operator", .text).notNull()
                t.column("state", .text).notNull()
                t.column("created_at", .double).notNull()
                t.column("started_at", .double)
                t.column("ended_at", .double)
                t.column("plan", .text).notNull()
            }
            try db.create(table: "checklist_answer") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("exam_id", .integer).notNull().references("exam").indexed()
                t.column("item", .text).notNull()
                t.column("value", .text).notNull()
                t.column("answered_by", .text).notNull()
                t.column("answered_at", .double).notNull()
            }
            try db.create(table: "scan") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("exam_id", .integer).notNull().references("exam").indexed()
                t.column("site", .text).notNull()
                t.column("attempt", .integer).notNull()
                t.column("status", .text).notNull()
                t.column("reason", .text)
                t.column("capture", .text)
                t.column("scan_id", .integer)
                t.column("planned_lines", .integer).notNull()
                t.column("lines", .integer).notNull()
                t.column("started_at", .text)
                t.column("ended_at", .text)
                t.column("quick_look", .text)
                t.column("motion", .text)
            }
            try db.create(table: "warning") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("exam_id", .integer).notNull().references("exam").indexed()
                t.column("scan_row", .integer)
                t.column("at", .double).notNull()
                t.column("kind", .text).notNull()
                t.column("detail", .text).notNull()
            }
        }
        m.registerMigration("v2: the dose of each scan attempt") { db in
            try db.alter(table: "scan") { t in t.add(column: "dose", .text) }
        }
        m.registerMigration("v3: the exposure mode of each scan attempt") { db in
            try db.alter(table: "scan") { t in t.add(column: "exposure", .text) }
        }
        m.registerMigration("v4: the decomposed scan of each completed attempt") { db in
            try db.alter(table: "scan") { t in t.add(column: "decomposed", .text) }
        }
        m.registerMigration("v5: the site's analysis (ROIs, scores, findings) or why there is none") { db in
            try db.alter(table: "scan") { t in
                t.add(column: "analysis", .text)
                t.add(column: "analysis_note", .text)
            }
        }
        m.registerMigration("v6: the device of each scan attempt; precision studies") { db in
            try db.alter(table: "scan") { t in t.add(column: "device", .text) }
            try db.create(table: "precision") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device", .text).notNull()
                t.column("roi", .text).notNull()
                t.column("record", .text).notNull()
                t.column("created_at", .double).notNull()
                t.column("created_by", .text).notNull()
            }
        }
        m.registerMigration("v7: technologists' ROI corrections") { db in
            try db.create(table: "correction") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("exam_id", .integer).notNull().references("exam")
                t.column("site", .text).notNull()
                t.column("attempt", .integer).notNull()
                t.column("record", .text).notNull()
                t.column("created_at", .double).notNull()
                t.column("created_by", .text).notNull()
            }
        }
        m.registerMigration("v8: phantom QC results and the service resets that start a new baseline") { db in
            try db.create(table: "qc") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device", .text).notNull()
                t.column("at", .double).notNull()
                t.column("bmd", .text).notNull()
                t.column("capture", .text)
                t.column("created_by", .text).notNull()
            }
            try db.create(table: "qc_reset") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device", .text).notNull()
                t.column("at", .double).notNull()
                t.column("created_by", .text).notNull()
                t.column("reason", .text).notNull()
            }
        }
        m.registerMigration("v9: service overrides of the QC lockout; cross-calibrations") { db in
            try db.create(table: "qc_crosscal") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device", .text).notNull()
                t.column("at", .double).notNull()
                t.column("record", .text).notNull()
            }
            try db.create(table: "qc_override") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("device", .text).notNull()
                t.column("at", .double).notNull()
                t.column("created_by", .text).notNull()
                t.column("reason", .text).notNull()
            }
        }
        m.registerMigration("v10: the worklist's order an exam fulfils") { db in
            try db.alter(table: "exam") { t in t.add(column: "scheduled", .text) }
        }
        registerDicomMigrations(&m)
        m.registerMigration("v14: why an exam was aborted, as the technologist chose it") { db in
            try db.alter(table: "exam") { t in t.add(column: "abort_cause", .text) }
        }
        m.registerMigration("v15: the UID root and station each exam's DICOM objects are named under") { db in
            try db.create(table: "dicom_exam") { t in
                t.primaryKey("exam_id", .integer).references("exam")
                t.column("uid_root", .text)
                t.column("uid_station", .text).notNull()
                t.column("at", .double).notNull()
            }
        }
        return m
    }

    // MARK: - Phantom QC

    public func addQC(device: String, at: Date, bmdGCm2: [String: Double], capture: String?, by: String) throws -> Int64 {
        try db.write { db in
            try db.execute(sql: "INSERT INTO qc (device, at, bmd, capture, created_by) VALUES (?, ?, ?, ?, ?)",
                           arguments: [device, at.timeIntervalSince1970, try Self.json(bmdGCm2), capture, by])
            return db.lastInsertedRowID
        }
    }

    public func qcHistory(device: String) throws -> QCHistory {
        try db.read { db in
            let reset = try Row.fetchOne(db, sql: "SELECT id, at, created_by, reason FROM qc_reset WHERE device = ? ORDER BY id DESC LIMIT 1",
                                         arguments: [device])
            // Results after the reset: ids of the two tables are not comparable, times are.
            let after: Double = reset?["at"] ?? -Double.infinity
            let rows = try Row.fetchAll(db, sql: "SELECT id, at, bmd FROM qc WHERE device = ? AND at >= ? ORDER BY at, id", arguments: [device, after])
            let measurements = try rows.map { row -> QualityControl.Measurement in
                let id: Int64 = row["id"]
                let text: String = row["bmd"]
                guard let bmd = try? JSONDecoder().decode([String: Double].self, from: Data(text.utf8)), !bmd.isEmpty,
                      bmd.values.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                    throw ExamStoreError("QC result \(id) of \(device) cannot be read (its BMD is '\(text.prefix(80))'): the history stops there; a service reset starts a new one")
                }
                return QualityControl.Measurement(id: id, at: Date(timeIntervalSince1970: row["at"]), bmdGCm2: bmd)
            }
            return QCHistory(measurements: measurements,
                             reset: reset.map { QCHistory.Reset(at: Date(timeIntervalSince1970: $0["at"]), by: $0["created_by"], reason: $0["reason"]) })
        }
    }

    public func resetQC(device: String, at: Date, by: String, reason: String) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO qc_reset (device, at, created_by, reason) VALUES (?, ?, ?, ?)",
                           arguments: [device, at.timeIntervalSince1970, by, reason])
        }
    }

    public func qcPreviousHistory(device: String) throws -> [QualityControl.Measurement] {
        try db.read { db in
            let resets = try Double.fetchAll(db, sql: "SELECT at FROM qc_reset WHERE device = ? ORDER BY id DESC LIMIT 2", arguments: [device])
            guard let latest = resets.first else { return [] }
            let from = resets.count > 1 ? resets[1] : -Double.infinity
            let rows = try Row.fetchAll(db, sql: "SELECT id, at, bmd FROM qc WHERE device = ? AND at >= ? AND at < ? ORDER BY at, id",
                                        arguments: [device, from, latest])
            return try rows.map { row in
                let id: Int64 = row["id"]
                let text: String = row["bmd"]
                guard let bmd = try? JSONDecoder().decode([String: Double].self, from: Data(text.utf8)), !bmd.isEmpty,
                      bmd.values.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                    throw ExamStoreError("QC result \(id) of \(device) cannot be read (its BMD is '\(text.prefix(80))')")
                }
                return QualityControl.Measurement(id: id, at: Date(timeIntervalSince1970: row["at"]), bmdGCm2: bmd)
            }
        }
    }

    public func saveCrossCalibration(device: String, at: Date, _ record: QualityControl.CrossCalibration) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO qc_crosscal (device, at, record) VALUES (?, ?, ?)",
                           arguments: [device, at.timeIntervalSince1970, try Self.json(record)])
        }
    }

    public func crossCalibration(device: String) throws -> (at: Date, record: QualityControl.CrossCalibration)? {
        try db.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT id, at, record FROM qc_crosscal WHERE device = ? ORDER BY id DESC LIMIT 1", arguments: [device]) else {
                return nil
            }
            let id: Int64 = row["id"], text: String = row["record"]
            guard let record = try? JSONDecoder().decode(QualityControl.CrossCalibration.self, from: Data(text.utf8)) else {
                throw ExamStoreError("cross-calibration \(id) of \(device) cannot be read")
            }
            return (Date(timeIntervalSince1970: row["at"]), record)
        }
    }

    public func addQCOverride(device: String, at: Date, by: String, reason: String) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO qc_override (device, at, created_by, reason) VALUES (?, ?, ?, ?)",
                           arguments: [device, at.timeIntervalSince1970, by, reason])
        }
    }

    public func qcOverride(device: String) throws -> QualityControl.Override? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT at, created_by, reason FROM qc_override WHERE device = ? ORDER BY at DESC, id DESC LIMIT 1",
                             arguments: [device]).map { QualityControl.Override(at: Date(timeIntervalSince1970: $0["at"]), by: $0["created_by"], reason: $0["reason"]) }
        }
    }

    public func lastQCScan(device: String) throws -> Date? {
        try db.read { db in
            try Double.fetchOne(db, sql: "SELECT MAX(at) FROM qc WHERE device = ?", arguments: [device]).map { Date(timeIntervalSince1970: $0) }
        }
    }

    // MARK: - ExamRecorder

    public func createExam(patient: PatientRecord, referral: String, operatorName: String, plan: [Site], scheduled: ScheduledProcedure? = nil, at: Date) throws -> Int64 {
        let scheduledText = try scheduled.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        return try db.write { db in
            try db.execute(sql: """
                INSERT INTO patient (id, name, sex, birth_date, ethnicity) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET name = excluded.name, sex = excluded.sex, birth_date = excluded.birth_date,
                    ethnicity = excluded.ethnicity
                """, arguments: [patient.id, patient.name, patient.sex.rawValue, patient.birthDate, patient.ethnicity])
            try db.execute(sql: "INSERT INTO exam (patient_id, referral, operator, state, created_at, plan, scheduled) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [patient.id, referral, operatorName, ExamState.created.rawValue, at.timeIntervalSince1970, Self.json(plan), scheduledText])
            return db.lastInsertedRowID
        }
    }

    public func recordAnswers(examID: Int64, answers: ChecklistAnswers, by: String, at: Date) throws {
        let fields = try JSONSerialization.jsonObject(with: JSONEncoder().encode(answers)) as? [String: Any] ?? [:]
        try db.write { db in
            for (item, value) in fields.sorted(by: { $0.key < $1.key }) {
                let text = String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]), as: UTF8.self)
                try db.execute(sql: "INSERT INTO checklist_answer (exam_id, item, value, answered_by, answered_at) VALUES (?, ?, ?, ?, ?)",
                               arguments: [examID, item, text, by, at.timeIntervalSince1970])
            }
        }
    }

    public func answers(examID: Int64) throws -> ChecklistAnswers {
        try db.read { db in try Self.answers(db, examID) }
    }

    static func answers(_ db: Database, _ examID: Int64) throws -> ChecklistAnswers {
        let rows = try Row.fetchAll(db, sql: "SELECT item, value FROM checklist_answer WHERE exam_id = ? ORDER BY id", arguments: [examID])
        var latest: [String: Any] = [:]
        for row in rows {
            let item: String = row["item"], value: String = row["value"]
            latest[item] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed])
        }
        return try JSONDecoder().decode(ChecklistAnswers.self, from: JSONSerialization.data(withJSONObject: latest))
    }

    public func setState(examID: Int64, state: ExamState, at: Date) throws {
        try db.write { db in
            switch state {
            case .inProgress:
                try db.execute(sql: "UPDATE exam SET state = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
                               arguments: [state.rawValue, at.timeIntervalSince1970, examID])
            case .completed, .aborted:
                try db.execute(sql: "UPDATE exam SET state = ?, ended_at = ? WHERE id = ?", arguments: [state.rawValue, at.timeIntervalSince1970, examID])
            default:
                try db.execute(sql: "UPDATE exam SET state = ? WHERE id = ?", arguments: [state.rawValue, examID])
            }
        }
    }

    public func setAborted(examID: Int64, cause: AbortCause?, warning: ExamWarning, at: Date) throws -> Bool {
        try db.write { db in
            // Only an exam still open: a step that completed the exam while the abort waited
            // for X-rays off keeps its completed record.
            try db.execute(sql: "UPDATE exam SET state = ?, ended_at = ?, abort_cause = ? WHERE id = ? AND state IN (?, ?, ?, ?)",
                           arguments: [ExamState.aborted.rawValue, at.timeIntervalSince1970, cause?.rawValue, examID,
                                       ExamState.created.rawValue, ExamState.blocked.rawValue, ExamState.ready.rawValue, ExamState.inProgress.rawValue])
            guard db.changesCount > 0 else { return false }
            try Self.insertWarning(db, examID: examID, attemptRow: nil, warning: warning, at: at)
            return true
        }
    }

    public func setPlan(examID: Int64, plan: [Site]) throws {
        try db.write { db in try db.execute(sql: "UPDATE exam SET plan = ? WHERE id = ?", arguments: [Self.json(plan), examID]) }
    }

    public func beginAttempt(examID: Int64, attempt a: SiteAttempt) throws -> Int64 {
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO scan (exam_id, site, attempt, status, reason, capture, scan_id, planned_lines, lines, started_at, ended_at, quick_look, motion,
                                  device)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [examID, a.site.rawValue, a.attempt, a.status.rawValue, a.reason, a.capture, a.scanID.map { Int64($0) }, a.plannedLines,
                                 a.lines, a.startedAt, a.endedAt, try a.quickLook.map(Self.json), try Self.json(a.motion), a.device])
            return db.lastInsertedRowID
        }
    }

    public func updateAttempt(row: Int64, lines: Int, capture: String?, scanID: UInt32?) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE scan SET lines = ?, capture = COALESCE(?, capture), scan_id = COALESCE(?, scan_id) WHERE id = ?",
                           arguments: [lines, capture, scanID.map { Int64($0) }, row])
        }
    }

    public func finishAttempt(row: Int64, attempt a: SiteAttempt) throws {
        try db.write { db in
            try db.execute(sql: """
                UPDATE scan SET status = ?, reason = ?, capture = ?, scan_id = ?, lines = ?, ended_at = ?, quick_look = ?, motion = ?, dose = ?,
                    exposure = ?, decomposed = ?, analysis = ?, analysis_note = ?, device = COALESCE(?, device) WHERE id = ?
                """, arguments: [a.status.rawValue, a.reason, a.capture, a.scanID.map { Int64($0) }, a.lines, a.endedAt,
                                 try a.quickLook.map(Self.json), try Self.json(a.motion), try a.dose.map(Self.json),
                                 try a.exposure.map(Self.json), a.decomposed, try a.analysis.map(Self.json), a.analysisNote, a.device, row])
        }
    }

    public func addWarning(examID: Int64, attemptRow: Int64?, warning: ExamWarning, at: Date) throws {
        try db.write { db in try Self.insertWarning(db, examID: examID, attemptRow: attemptRow, warning: warning, at: at) }
    }

    private static func insertWarning(_ db: Database, examID: Int64, attemptRow: Int64?, warning: ExamWarning, at: Date) throws {
        try db.execute(sql: "INSERT INTO warning (exam_id, scan_row, at, kind, detail) VALUES (?, ?, ?, ?, ?)",
                       arguments: [examID, attemptRow, at.timeIntervalSince1970, warning.kind.rawValue, try json(warning)])
    }

    public func exam(_ id: Int64) throws -> StoredExam? {
        try db.read { db in try Self.exam(db, id) }
    }

    public func priorExam(patientID: String, before examID: Int64) throws -> StoredExam? {
        try db.read { db in
            // The latest earlier exam of the patient with a completed, analysed scan of a site.
            let ids = try Int64.fetchAll(db, sql: """
                SELECT DISTINCT exam.id FROM exam JOIN scan ON scan.exam_id = exam.id
                WHERE exam.patient_id = ? AND exam.id < ? AND scan.status = 'completed' AND scan.analysis IS NOT NULL
                ORDER BY exam.id DESC LIMIT 1
                """, arguments: [patientID, examID])
            return try ids.first.flatMap { try Self.exam(db, $0) }
        }
    }

    public func savePrecision(_ records: [PrecisionRecord], by: String, at: Date) throws {
        try db.write { db in
            for r in records {
                try db.execute(sql: "INSERT INTO precision (device, roi, record, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                               arguments: [r.device, r.roi, try Self.json(r), at.timeIntervalSince1970, by])
            }
        }
    }

    public func recordCorrection(examID: Int64, analysis: SiteResult, record: CorrectionRecord) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE scan SET analysis = ?, analysis_note = NULL WHERE exam_id = ? AND site = ? AND attempt = ?",
                           arguments: [try Self.json(analysis), examID, record.site, record.attempt])
            guard db.changesCount == 1 else {
                throw ExamStoreError("exam \(examID) has no \(record.site) attempt \(record.attempt) to correct")
            }
            try db.execute(sql: "INSERT INTO correction (exam_id, site, attempt, record, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [examID, record.site, record.attempt, try Self.json(record), Date().timeIntervalSince1970, record.by])
        }
    }

    public func corrections(examID: Int64) throws -> [CorrectionRecord] {
        try db.read { db in
            try String.fetchAll(db, sql: "SELECT record FROM correction WHERE exam_id = ? ORDER BY id", arguments: [examID]).map {
                try JSONDecoder().decode(CorrectionRecord.self, from: Data($0.utf8))
            }
        }
    }

    public func precision(device: String?) throws -> [PrecisionRecord] {
        try db.read { db in
            // The latest study of each ROI (of the device, or of every device).
            let rows = try Row.fetchAll(db, sql: """
                SELECT record, created_at, created_by FROM precision WHERE id IN (SELECT MAX(id) FROM precision GROUP BY device, roi)
                AND (? IS NULL OR device = ?) ORDER BY device, id
                """, arguments: [device, device])
            return try rows.map { row in
                let text: String = row["record"]
                var r = try JSONDecoder().decode(PrecisionRecord.self, from: Data(text.utf8))
                r.createdAt = Date(timeIntervalSince1970: row["created_at"]).formatted(.iso8601)
                r.createdBy = row["created_by"]
                return r
            }
        }
    }

    public func list(limit: Int) throws -> [StoredExam] {
        try db.read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM exam ORDER BY id DESC LIMIT ?", arguments: [limit]).compactMap { try Self.exam(db, $0) }
        }
    }

    public func examsInProgress() throws -> [Int64] {
        try db.read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM exam WHERE state = ? ORDER BY id", arguments: [ExamState.inProgress.rawValue])
        }
    }

    public func runningAttempts() throws -> [(examID: Int64, row: Int64, attempt: SiteAttempt)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM scan WHERE status = ? ORDER BY id", arguments: [SiteAttempt.Status.running.rawValue]).compactMap { row in
                guard let a = try Self.attempt(row, warnings: []) else { return nil }
                return (row["exam_id"], row["id"], a)
            }
        }
    }

    /// Every answer given for an exam, in order: the checklist's audit trail.
    public func answerHistory(examID: Int64) throws -> [(item: String, value: String, by: String, at: Date)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT item, value, answered_by, answered_at FROM checklist_answer WHERE exam_id = ? ORDER BY id",
                             arguments: [examID]).map { ($0["item"], $0["value"], $0["answered_by"], Date(timeIntervalSince1970: $0["answered_at"])) }
        }
    }

    // MARK: - Reading rows back

    static func exam(_ db: Database, _ id: Int64) throws -> StoredExam? {
        guard let e = try Row.fetchOne(db, sql: """
            SELECT exam.*, patient.name, patient.sex, patient.birth_date, patient.ethnicity FROM exam
            JOIN patient ON patient.id = exam.patient_id WHERE exam.id = ?
            """, arguments: [id]) else { return nil }
        let warningRows = try Row.fetchAll(db, sql: "SELECT scan_row, detail FROM warning WHERE exam_id = ? ORDER BY id", arguments: [id])
        var byScan: [Int64: [ExamWarning]] = [:]
        var examWarnings: [ExamWarning] = []
        for w in warningRows {
            let detail: String = w["detail"]
            let warning = try JSONDecoder().decode(ExamWarning.self, from: Data(detail.utf8))
            if let row: Int64 = w["scan_row"] { byScan[row, default: []].append(warning) } else { examWarnings.append(warning) }
        }
        let attempts = try Row.fetchAll(db, sql: "SELECT * FROM scan WHERE exam_id = ? ORDER BY id", arguments: [id]).compactMap { row in
            try attempt(row, warnings: byScan[row["id"]] ?? [])
        }
        let planText: String = e["plan"]
        let scheduledText: String? = e["scheduled"]
        let sexText: String = e["sex"]
        let stateText: String = e["state"]
        let causeText: String? = e["abort_cause"]
        var stored = StoredExam(
            id: e["id"],
            patient: PatientRecord(id: e["patient_id"], name: e["name"], sex: PatientRecord.Sex(rawValue: sexText) ?? .female,
                                   birthDate: e["birth_date"], ethnicity: e["ethnicity"]),
            referral: e["referral"], operatorName: e["operator"], state: ExamState(rawValue: stateText) ?? .created,
            createdAt: Date(timeIntervalSince1970: e["created_at"]),
            startedAt: (e["started_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
            endedAt: (e["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
            plan: try JSONDecoder().decode([Site].self, from: Data(planText.utf8)), attempts: attempts, warnings: examWarnings)
            .with(scheduled: try scheduledText.map { try JSONDecoder().decode(ScheduledProcedure.self, from: Data($0.utf8)) })
        // A cause this version does not know (a newer one wrote it) reads as "other".
        stored.abortCause = causeText.map { AbortCause(rawValue: $0) ?? .other }
        return stored
    }

    static func attempt(_ row: Row, warnings: [ExamWarning]) throws -> SiteAttempt? {
        let siteText: String = row["site"], statusText: String = row["status"]
        guard let site = Site(rawValue: siteText), let status = SiteAttempt.Status(rawValue: statusText) else { return nil }
        let quick: String? = row["quick_look"], motion: String? = row["motion"], dose: String? = row["dose"]
        let exposure: String? = row["exposure"]
        let scanID: Int64? = row["scan_id"]
        var attempt = SiteAttempt(
            site: site, attempt: row["attempt"], status: status, reason: row["reason"], capture: row["capture"],
            scanID: scanID.map { UInt32(truncatingIfNeeded: $0) }, plannedLines: row["planned_lines"], lines: row["lines"],
            startedAt: row["started_at"], endedAt: row["ended_at"],
            quickLook: try quick.map { try JSONDecoder().decode(QuickLook.self, from: Data($0.utf8)) },
            warnings: warnings,
            motion: try motion.map { try JSONDecoder().decode([MotionRecord].self, from: Data($0.utf8)) } ?? [],
            dose: try dose.map { try JSONDecoder().decode(ScanDose.self, from: Data($0.utf8)) })
        attempt.exposure = try exposure.map { try JSONDecoder().decode(SiteExposure.self, from: Data($0.utf8)) }
        attempt.decomposed = row["decomposed"]
        attempt.device = row["device"]
        // An analysis stored by another version that this one cannot read is reported, not fatal.
        let analysis: String? = row["analysis"]
        attempt.analysisNote = row["analysis_note"]
        if let analysis {
            attempt.analysis = try? JSONDecoder().decode(SiteResult.self, from: Data(analysis.utf8))
            if attempt.analysis == nil { attempt.analysisNote = "the stored analysis cannot be read by this version: analyse the scan again" }
        }
        return attempt
    }

    static func json(_ v: some Encodable) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(v), as: UTF8.self)
    }
}

/// A write the store refuses because the rows it would change are not there.
public struct ExamStoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A failure of the exam database, in words: what happened to which file and what to do.
/// Every write is one transaction, so a failed one changed nothing.
public struct StoreFailure: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable { case readOnly = "read-only", locked, full, io, cannotOpen = "cannot open", other }
    public let kind: Kind
    public let description: String

    init(_ e: DatabaseError, path: String) {
        let detail = e.message ?? "\(e.resultCode)"
        switch e.resultCode.primaryResultCode {
        case .SQLITE_READONLY:
            kind = .readOnly
            description = "the exam database \(path) is read-only (\(detail)): nothing was recorded; check the disk and its mount"
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            kind = .locked
            description = "the exam database \(path) is locked by another program (waited \(ExamStore.busyTimeout) s): nothing was recorded; close the other program and try again"
        case .SQLITE_FULL:
            kind = .full
            description = "the disk holding the exam database \(path) is full: nothing was recorded; free space and try again"
        case .SQLITE_IOERR:
            kind = .io
            description = "the exam database \(path) cannot be written (I/O error: \(detail)): nothing was recorded; check the disk"
        case .SQLITE_CANTOPEN, .SQLITE_PERM:
            kind = .cannotOpen
            description = "the exam database \(path) cannot be opened (\(detail)): check its directory and permissions"
        default:
            kind = .other
            description = "the exam database \(path) failed: \(e)"
        }
    }
}
