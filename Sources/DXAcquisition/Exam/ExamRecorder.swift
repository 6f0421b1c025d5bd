import DXAnalysis
import DXClinical
import Foundation

/// Where exams are kept (DXStore's SQLite store; an in-memory one in tests). Every call is a
/// transaction that is on disk when it returns: a daemon killed after it loses nothing of it.
public protocol ExamRecorder: Sendable {
    func createExam(patient: PatientRecord, referral: String, operatorName: String, plan: [Site], scheduled: ScheduledProcedure?, at: Date) throws -> Int64
    /// Keeps the exam's results as they are now (its end, a correction after it) for the
    /// DICOM service, which builds and sends its objects from them; returns the revision.
    @discardableResult
    func publishResults(examID: Int64, results: ExamResults, at: Date) throws -> Int
    /// Finished (completed or aborted) exams, ended since the store had DICOM, whose results
    /// were never published (the daemon stopped between the exam's end and the publication).
    func unpublishedExams() throws -> [Int64]
    /// The DICOM service's queue: one exam's objects, or the newest 500 and every one not sent.
    func outbox(examID: Int64?) throws -> [OutboxObject]
    /// Published results the DICOM service has not built: when each was published, and why
    /// it could not be built when it says so.
    func unbuiltResults(examID: Int64?) throws -> [UnbuiltResults]
    /// The exams' procedure steps at the RIS (MPPS): one exam's, or the newest 100 and every
    /// one not ended.
    func performedSteps(examID: Int64?) throws -> [PerformedStepRecord]
    /// A service engineer's resend: the exam's objects (or one) due again now; how many.
    @discardableResult
    func resend(examID: Int64, objectID: Int64?, at: Date) throws -> Int
    /// Records each given answer as its own row, with who gave it and when.
    func recordAnswers(examID: Int64, answers: ChecklistAnswers, by: String, at: Date) throws
    /// The latest answer to each item.
    func answers(examID: Int64) throws -> ChecklistAnswers
    func setState(examID: Int64, state: ExamState, at: Date) throws
    /// Ends the exam as aborted, with the technologist's cause (nil: none chosen) and the
    /// warning that says why, in one transaction, if it is still open (created, blocked,
    /// ready, in progress); false, and nothing changed, if it had already ended.
    func setAborted(examID: Int64, cause: AbortCause?, warning: ExamWarning, at: Date) throws -> Bool
    func setPlan(examID: Int64, plan: [Site]) throws
    /// A new attempt at a site, before anything is exposed; returns its row.
    func beginAttempt(examID: Int64, attempt: SiteAttempt) throws -> Int64
    /// Lines received so far (called as lines arrive).
    func updateAttempt(row: Int64, lines: Int, capture: String?, scanID: UInt32?) throws
    func finishAttempt(row: Int64, attempt: SiteAttempt) throws
    func addWarning(examID: Int64, attemptRow: Int64?, warning: ExamWarning, at: Date) throws
    /// The stored exam, its checklist status left for the caller to evaluate.
    func exam(_ id: Int64) throws -> StoredExam?
    /// The patient's latest exam before this one that has a completed, analysed scan.
    func priorExam(patientID: String, before examID: Int64) throws -> StoredExam?
    /// Precision studies (`dexa precision`): stored with who and when; the latest per device
    /// and ROI is the one in force.
    func savePrecision(_ records: [PrecisionRecord], by: String, at: Date) throws
    func precision(device: String?) throws -> [PrecisionRecord]
    /// A technologist's ROI correction: the attempt's analysis replaced and the correction
    /// kept on the record, in one transaction.
    func recordCorrection(examID: Int64, analysis: SiteResult, record: CorrectionRecord) throws
    /// The exam's corrections, oldest first.
    func corrections(examID: Int64) throws -> [CorrectionRecord]
    func list(limit: Int) throws -> [StoredExam]
    /// The exams in progress (at most one, unless the store was edited by hand).
    func examsInProgress() throws -> [Int64]
    /// Attempts still marked running (the daemon died during them).
    func runningAttempts() throws -> [(examID: Int64, row: Int64, attempt: SiteAttempt)]
    /// Phantom QC (docs/qc.md): a result of the device's, by whom; returns its id.
    func addQC(device: String, at: Date, bmdGCm2: [String: Double], capture: String?, by: String) throws -> Int64
    /// The device's QC results since its latest reset (oldest first), and that reset. A row
    /// that cannot be read is an error naming it, never skipped.
    func qcHistory(device: String) throws -> QCHistory
    /// A service action that starts a new history (and so a new baseline).
    func resetQC(device: String, at: Date, by: String, reason: String) throws
    /// The device's QC results between its two latest resets (empty before a reset): what a
    /// cross-calibration compares the new history with.
    func qcPreviousHistory(device: String) throws -> [QualityControl.Measurement]
    func saveCrossCalibration(device: String, at: Date, _ record: QualityControl.CrossCalibration) throws
    /// The device's latest cross-calibration.
    func crossCalibration(device: String) throws -> (at: Date, record: QualityControl.CrossCalibration)?
    /// A service override of the QC lockout (docs/qc.md), and the latest one of the device's.
    func addQCOverride(device: String, at: Date, by: String, reason: String) throws
    func qcOverride(device: String) throws -> QualityControl.Override?
    /// When the device's latest QC scan was made (whatever its history or result).
    func lastQCScan(device: String) throws -> Date?
}

/// A device's QC history since its latest reset.
public struct QCHistory: Sendable, Equatable {
    public struct Reset: Sendable, Equatable, Codable {
        public var at: Date
        public var by: String
        public var reason: String
        public init(at: Date, by: String, reason: String) { self.at = at; self.by = by; self.reason = reason }
    }
    public var measurements: [QualityControl.Measurement]
    public var reset: Reset?
    public init(measurements: [QualityControl.Measurement], reset: Reset?) { self.measurements = measurements; self.reset = reset }
}

/// An exam as stored: everything but the checklist's evaluation (which depends on the day).
public struct StoredExam: Sendable, Equatable, ExamProgress {
    public var id: Int64
    public var patient: PatientRecord
    public var referral: String
    public var operatorName: String
    public var state: ExamState
    public var createdAt: Date
    public var startedAt: Date?
    public var endedAt: Date?
    public var plan: [Site]
    public var attempts: [SiteAttempt]
    public var warnings: [ExamWarning]
    /// The worklist's order the exam fulfils; nil for an exam typed in.
    public var scheduled: ScheduledProcedure?
    /// Why an aborted exam was aborted (nil: not aborted, or aborted before it was kept).
    public var abortCause: AbortCause?

    public init(id: Int64, patient: PatientRecord, referral: String, operatorName: String, state: ExamState, createdAt: Date,
                startedAt: Date?, endedAt: Date?, plan: [Site], attempts: [SiteAttempt], warnings: [ExamWarning]) {
        self.id = id; self.patient = patient; self.referral = referral; self.operatorName = operatorName; self.state = state
        self.createdAt = createdAt; self.startedAt = startedAt; self.endedAt = endedAt; self.plan = plan; self.attempts = attempts
        self.warnings = warnings
    }

    /// The same exam with the worklist's order it fulfils.
    public func with(scheduled: ScheduledProcedure?) -> StoredExam {
        var e = self
        e.scheduled = scheduled
        return e
    }
}

/// Why an exam request cannot be done: each maps to a JSON-RPC error a client can act on.
public enum ExamError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownExam(Int64)
    case wrongState(Int64, ExamState, String)
    case checklistIncomplete([String])
    case blocked([String])
    case anotherExamRunning(Int64)
    case stepRunning(Int64, Site)
    /// The patient's record cannot be right (the message names the field).
    case invalidPatient(String)
    case noReferral
    /// A checklist answer no one can have measured (the message names the field).
    case invalidAnswer(String)
    case noSkipReason
    case alreadyInPlan(Site)
    /// The worklist's order (accession number, Study Instance UID) has an exam already.
    case orderTaken(Int64, ExamState, String)
    case notInPlan(Site)
    case nothingToRepeat(Int64)
    case allSitesDone(Int64)
    /// The exam protocol file has no scan for a site of the plan.
    case noProtocolScan(Site)
    case positioningFailed(Site, String)
    /// The scan sequence ended without running the site's scan.
    case noScanRan(Site)
    case notCalibrated(String)
    /// Quality control locks patient exams (the message names QC and what lifts it).
    case qcLocked(String)
    case storage(String)
    /// A precision study that cannot be made from the exams given (the message says why).
    case precision(String)
    /// An ROI correction that cannot be made (nothing to correct, or it does not fit the scan).
    case correction(String)

    public var description: String {
        switch self {
        case .unknownExam(let id): "no exam \(id)"
        case let .wrongState(id, state, want): "exam \(id) is \(state.rawValue): \(want)"
        case .checklistIncomplete(let missing): "the checklist is not complete: \(missing.joined(separator: ", "))"
        case .blocked(let why): "the checklist blocks the exam: \(why.joined(separator: "; "))"
        case .anotherExamRunning(let id): "exam \(id) is in progress; finish or abort it first"
        case let .stepRunning(id, site): "exam \(id) is scanning the \(site.title); wait, or abort"
        case .invalidPatient(let why): why
        case .noReferral: "the exam needs a referral"
        case .invalidAnswer(let why): why
        case .noSkipReason: "a skipped site needs a reason"
        case .alreadyInPlan(let site): "the \(site.title) is already in the plan"
        case .orderTaken(let id, let state, let accession):
            "exam \(id) (\(state.rawValue)) already fulfils the order with accession number \(accession): continue that exam, or abort it before making another for the same order"
        case .notInPlan(let site): "the \(site.title) is not in this exam's plan (exam.add adds it)"
        case .nothingToRepeat(let id): "exam \(id): no site has been scanned yet"
        case .allSitesDone(let id): "every site of exam \(id) is done"
        case .noProtocolScan(let site): "the exam protocol has no scan for the \(site.title)"
        case let .positioningFailed(site, why): "positioning for the \(site.title) failed: \(why)"
        case .noScanRan(let site): "no scan ran for the \(site.title)"
        case .notCalibrated(let why): "patient scans are refused: \(why)"
        case .qcLocked(let why): why
        case .storage(let why): "the exam store failed: \(why)"
        case .precision(let why): "no precision study: \(why)"
        case .correction(let why): "no correction made: \(why)"
        }
    }
}
