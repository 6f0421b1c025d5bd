import DXAnalysis
import DXClinical
import DXDecomposition
import DXDevice
import DXProtocol
import Foundation
import Logging
import Synchronization

/// What the sequencer tells whoever follows an exam step, as it happens.
public enum ExamNotice: Sendable {
    /// A step of a site: `positioning`, `scout`, `scanning`, `quick_look`, `done`.
    case step(examID: Int64, site: Site, phase: String)
    case progress(examID: Int64, site: Site, ScanProgress)
    case warning(examID: Int64, site: Site?, ExamWarning)
    /// Rows of the site's image as they are decomposed (about every 100 ms, with `progress`).
    case image(examID: Int64, site: Site, ImageRows)
}

/// Rows of a site's bone image as the scan decomposes them, for a screen to draw the image
/// growing: each row a line of the scan (its number) and its pixels' bone mineral in a byte
/// (0: no number, saturated or no photons; 1–255: 0 to 2 g/cm², 2/254 g/cm² a step; more than
/// 2 is 255). A picture, not a measurement: the measurements are the analysis's.
public struct ImageRows: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        public var line: Int
        public var bone: [UInt8]
        public init(line: Int, bone: [UInt8]) { self.line = line; self.bone = bone }
    }
    public var plannedLines: Int
    public var rows: [Row]

    public init(plannedLines: Int, rows: [Row]) { self.plannedLines = plannedLines; self.rows = rows }

    /// The top of the byte scale (g/cm²).
    public static let fullScale = 2.0

    public static func quantised(_ bone: [Double]) -> [UInt8] {
        bone.map { b in
            guard b.isFinite else { return 0 }
            return UInt8(1 + (min(max(b, 0), fullScale) / fullScale * 254).rounded())
        }
    }
}

/// The rows decomposed since the last look (the pipeline's thread adds, the progress callback
/// takes them).
final class RowBatch: Sendable {
    private let rows = Mutex<[ImageRows.Row]>([])
    func add(_ line: DecomposedLine) {
        let row = ImageRows.Row(line: Int(line.index), bone: ImageRows.quantised(line.bone))
        rows.withLock { $0.append(row) }
    }
    func take() -> [ImageRows.Row] { rows.withLock { r in defer { r = [] }; return r } }
}

/// One site's step, as `exam.start`, `exam.next` and `exam.repeat` return it.
public struct StepResult: Sendable {
    public var exam: ExamRecord
    public var attempt: SiteAttempt
    /// What the technologist does next, in words.
    public var message: String
}

/// The protocol sequencer: one exam at a time, site by site (positioning move, dark and air
/// references, the scan decomposed live with its timing and stillness checks, the quick
/// look), every step recorded before and after it runs. Each step is one request and can be
/// cancelled (the scan runner then turns X-rays off); `abort` stops a running step from
/// another request at once.
public actor ExamSequencer {
    public typealias Observer = @Sendable (ExamNotice) -> Void

    /// The QC lockout's settings (docs/qc.md): the rules, what "no QC today" does, and the
    /// site's calendar for "today".
    public struct QCLockout: Sendable {
        public var rules: QualityControl.Rules
        public var whenDue: QualityControl.DuePolicy
        public var calendar: Calendar
        /// When the QC day starts, minutes after midnight in `calendar`'s time zone.
        public var dayStartMinutes: Int
        public init(rules: QualityControl.Rules, whenDue: QualityControl.DuePolicy, calendar: Calendar = .current, dayStartMinutes: Int = 0) {
            self.rules = rules; self.whenDue = whenDue; self.calendar = calendar; self.dayStartMinutes = dayStartMinutes
        }
    }

    private let recorder: any ExamRecorder
    private let runner: ScanRunner
    private let session: DeviceSession
    private let clock: any Clock<Duration>
    private let now: @Sendable () -> Date
    private let calibration: @Sendable () -> Result<Calibration, any Error>
    private let logger: Logger
    /// Nil: no lockout (unit tests of the sequencer alone); the daemon always sets one.
    public let qcLockout: QCLockout?
    public let examProtocol: ExamProtocol
    /// The references the sites are scored against (the young-adult set, and the Z-score
    /// reference when one is installed).
    public let reference: ReferenceSet
    /// The step running now, if any.
    private var running: (examID: Int64, site: Site)?
    /// `abort` came while the running step was positioning: it must not go on to scan.
    private var stepAborted = false
    /// Aborts waiting for the running step to record its end.
    private var stepEndWaiters: [CheckedContinuation<Void, Never>] = []
    /// Exams an abort is ending: no step of theirs starts while the abort waits (a request
    /// for the next site that got in between the step's end and the abort's would expose).
    private var aborting: Set<Int64> = []
    /// Steps that ended while the exam database refused writes (read-only, locked, full):
    /// their outcome, kept until the database takes it. Written before any other request
    /// reads the store, so no step is shown as still running, and none is scanned again
    /// for want of its record, while the daemon lives.
    private var unrecorded: [(row: Int64, attempt: SiteAttempt)] = []
    /// The same, readable from the runner's callbacks: an abort that lands while a sequence
    /// is about to be claimed (the runner had nothing to stop yet) is passed on once the
    /// sequence has claimed the runner, before its first exposure.
    private let abortLatch = AbortLatch()
    /// When each exam started or resumed, on the sequencer's clock (the time budget).
    private var examClocks: [Int64: Stopwatch] = [:]
    private var budgetWarned: Set<Int64> = []

    public init(recorder: any ExamRecorder, runner: ScanRunner, session: DeviceSession, clock: any Clock<Duration>,
                examProtocol: ExamProtocol = .standard, reference: ReferenceSet = .nhanes, now: @escaping @Sendable () -> Date = { Date() },
                calibration: @escaping @Sendable () -> Result<Calibration, any Error>, qcLockout: QCLockout? = nil,
                logger: Logger = Logger(label: "dexa.exam")) {
        self.reference = reference
        self.qcLockout = qcLockout
        self.recorder = recorder
        self.runner = runner
        self.session = session
        self.clock = clock
        self.examProtocol = examProtocol
        self.now = now
        self.calibration = calibration
        self.logger = logger
    }

    // MARK: - Requests that only record

    /// The newest exams searched for one holding a worklist order (weeks of a unit's exams).
    static let orderLookback = 1000

    public func create(patient: PatientRecord, referral: String, operatorName: String, scheduled: ScheduledProcedure? = nil) throws(ExamError) -> ExamRecord {
        if let why = patient.problem { throw .invalidPatient(why) }
        if let why = scheduled?.problem { throw .invalidPatient("worklist item: \(why)") }
        guard !referral.trimmingCharacters(in: .whitespaces).isEmpty else { throw .noReferral }
        // One exam per order: a second (a double press, the same item chosen twice) would make
        // two studies with one Study Instance UID at the hospital. An aborted exam's order may
        // be taken again (the RIS still lists it as scheduled).
        if let order = scheduled {
            let held = try store { try recorder.list(limit: Self.orderLookback) }.first { e in
                e.scheduled?.accessionNumber == order.accessionNumber && e.scheduled?.studyInstanceUID == order.studyInstanceUID && e.state != .aborted
            }
            if let held { throw .orderTaken(held.id, held.state, order.accessionNumber) }
        }
        let id = try store {
            try recorder.createExam(patient: patient, referral: referral, operatorName: operatorName, plan: Site.standardOrder, scheduled: scheduled, at: now())
        }
        return try get(id)
    }

    /// Records the given answers (who and when) and re-evaluates: the plan follows the
    /// checklist (metal, fractures) until the exam starts.
    public func checklist(examID: Int64, answers: ChecklistAnswers, by: String) throws(ExamError) -> ExamRecord {
        let exam = try stored(examID)
        guard [.created, .blocked, .ready].contains(exam.state) else { throw .wrongState(examID, exam.state, "the checklist is closed once the exam has started") }
        if let why = answers.problem { throw .invalidAnswer(why) }
        try store { try recorder.recordAnswers(examID: examID, answers: answers, by: by, at: now()) }
        let status = try evaluate(exam)
        try store {
            try recorder.setPlan(examID: examID, plan: status.plan)
            try recorder.setState(examID: examID, state: status.complete ? .ready : (status.blocks.isEmpty ? .created : .blocked), at: now())
        }
        return try get(examID)
    }

    public func skip(examID: Int64, site: Site, reason: String, by: String) throws(ExamError) -> ExamRecord {
        let exam = try stored(examID)
        guard [.ready, .inProgress].contains(exam.state) else { throw .wrongState(examID, exam.state, "only a ready or running exam's sites can be skipped") }
        guard exam.plan.contains(site) else { throw .notInPlan(site) }
        if running?.examID == examID && running?.site == site { throw .stepRunning(examID, site) }
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw .noSkipReason }
        let attempt = SiteAttempt(site: site, attempt: exam.attempts.filter { $0.site == site }.count + 1, status: .skipped,
                                  reason: "skipped by \(by): \(reason)", startedAt: stamp(), endedAt: stamp())
        try store { _ = try recorder.beginAttempt(examID: examID, attempt: attempt) }
        try completeIfDone(examID)
        return try get(examID)
    }

    public func add(examID: Int64, site: Site) throws(ExamError) -> ExamRecord {
        let exam = try stored(examID)
        guard [.created, .blocked, .ready, .inProgress].contains(exam.state) else { throw .wrongState(examID, exam.state, "sites can only be added before the exam ends") }
        if exam.plan.contains(site), exam.latest(site)?.status != .skipped { throw .alreadyInPlan(site) }
        try store { try recorder.setPlan(examID: examID, plan: exam.plan.filter { $0 != site } + [site]) }
        if exam.latest(site)?.status == .skipped {
            // Un-skipping: a fresh pending attempt is what `next` looks for.
            let a = SiteAttempt(site: site, attempt: exam.attempts.filter { $0.site == site }.count + 1, status: .pending,
                                reason: "added again after a skip", startedAt: stamp())
            try store { _ = try recorder.beginAttempt(examID: examID, attempt: a) }
        }
        return try get(examID)
    }

    public func get(_ examID: Int64) throws(ExamError) -> ExamRecord {
        let exam = try stored(examID)
        return ExamRecord(id: exam.id, patient: exam.patient, referral: exam.referral, operatorName: exam.operatorName, state: exam.state,
                          createdAt: exam.createdAt.formatted(.iso8601), startedAt: exam.startedAt?.formatted(.iso8601),
                          endedAt: exam.endedAt?.formatted(.iso8601), plan: exam.plan, attempts: exam.attempts,
                          checklist: try evaluate(exam), warnings: exam.warnings, dose: ScanDose.total(exam.attempts.compactMap(\.dose)),
                          scheduled: exam.scheduled, abortCause: exam.abortCause)
    }

    /// The exam's clinical answer (`exam.results`): each site's analysis, the diagnosis, and the
    /// follow-up against the patient's latest earlier exam with this device's precision.
    public func results(_ examID: Int64) throws(ExamError) -> ExamResults {
        let exam = try get(examID)
        var results = ExamResults(exam, reference: reference)
        let corrections = try store { try recorder.corrections(examID: examID) }
        for i in results.sites.indices {
            results.sites[i].corrections = corrections.filter { $0.site == results.sites[i].site && $0.attempt == results.sites[i].attempt }
        }
        if let prior = try store({ try recorder.priorExam(patientID: exam.patient.id, before: examID) }) {
            let precision = try store { try recorder.precision(device: nil) }
            results.followUp = FollowUp.compare(exam, prior: try get(prior.id), precision: precision)
        }
        return results
    }

    /// A technologist's ROI correction of a site's latest completed scan (`exam.correct`):
    /// the site analysed again from its decomposed scan with the correction, the result stored
    /// in place of the old one, and the correction kept on the exam's record with who, when,
    /// why and the numbers before and after. A request that cannot be applied changes nothing.
    public func correct(examID: Int64, site: Site, request: CorrectionRequest, by: String) throws(ExamError) -> (record: CorrectionRecord, result: SiteResult) {
        let exam = try stored(examID)
        // The analyses run on this actor: none while a step runs, so that an abort is never
        // queued behind one.
        if let r = running { throw ExamError.stepRunning(r.examID, r.site) }
        if let why = request.problem { throw .correction(why) }
        let reason = request.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let attempt = exam.attempts.last(where: { $0.site == site && $0.status == .completed }) else {
            throw .correction("the \(site.title) has no completed scan")
        }
        // Disc lines and positions are table millimetres of one scan: a request made on an
        // earlier attempt's image does not land on a rescan.
        if let asked = request.attempt, asked != attempt.attempt {
            throw .correction("the \(site.title)'s result is from attempt \(attempt.attempt), not \(asked): look at the new image and correct again")
        }
        // A live decomposition that missed lines is not analysed (the result would depend on the
        // load); a correction must not analyse it either.
        guard attempt.quickLook?.complete == true, let path = attempt.decomposed else {
            throw .correction("the \(site.title)'s live decomposition is incomplete or was not kept: analyse its capture with dexa analyze")
        }
        var scan: DecomposedScan
        do { scan = try DecomposedScan.read(path: path) } catch {
            throw .correction("the \(site.title)'s decomposed scan \(path) cannot be read (\(error))")
        }
        guard scan.provenance.capture == attempt.capture, scan.provenance.scanID == attempt.scanID else {
            throw .correction("\(path) is not the decomposition of the \(site.title)'s scan (its capture or scan id differ): analyse the capture with dexa analyze")
        }
        scan.provenance.region = site.rawValue
        let patient = PatientContext(sex: exam.patient.sex.rawValue, birthDate: exam.patient.birthDate, on: exam.startedAt ?? exam.createdAt)
        let reference = self.reference
        let analyse = { (c: ROICorrection) in SiteAnalysis.analyze(scan, patient: patient, reference: reference, correction: c) }
        let current = attempt.analysis
        let next: ROICorrection
        switch (current?.correction ?? ROICorrection()).applying(request, current: current, analyse: analyse) {
        case .success(let c): next = c
        case .failure(let e): throw .correction(e.description)
        }
        if let why = next.problem(site: site.rawValue) { throw .correction(why) }
        let result: SiteResult
        switch analyse(next) {
        case .success(let r): result = r
        case .failure(let e): throw .correction(e.description)
        }
        var record = CorrectionRecord(site: site.rawValue, attempt: attempt.attempt, at: stamp(), by: by, reason: reason, change: request.words,
                                      correction: result.correction, before: CorrectionRecord.ROIValue.of(current), after: CorrectionRecord.ROIValue.of(result))
        // Analysed again by this version: when the first analysis was another's, the numbers
        // before and after differ by that too, and the record says so.
        if let was = current?.analysisVersion, was != result.analysisVersion {
            record.note = "the numbers before are from analysis \(was), after from \(result.analysisVersion): part of the change is the analysis's"
        }
        try store { try recorder.recordCorrection(examID: examID, analysis: result, record: record) }
        // A finished exam's corrected results go to the hospital as a new revision.
        if [.completed, .aborted].contains(exam.state) { publish(examID) }
        logger.notice("ROIs corrected", metadata: ["exam": "\(examID)", "site": "\(site.rawValue)", "by": "\(by)", "change": "\(record.change)"])
        return (record, result)
    }

    /// A precision study over the given exams (`dexa precision`); stored, by whom and when,
    /// when `save` is set, and from then on the LSC of this device's follow-ups.
    public func precisionStudy(examIDs: [Int64], save: Bool, by: String) throws(ExamError) -> PrecisionStudy {
        var exams: [ExamRecord] = []
        for id in examIDs { exams.append(try get(id)) }
        let study: PrecisionStudy
        do { study = try PrecisionStudy(exams: exams) } catch { throw .precision(error.description) }
        if save { try store { try recorder.savePrecision(study.records, by: by, at: now()) } }
        return study
    }

    /// A QC result of `device` stored, by whom, and the rules' reading of its history after it.
    public func qcRecord(device: String, bmdGCm2: [String: Double], capture: String?, by: String,
                         rules: QualityControl.Rules) throws(ExamError) -> (id: Int64, state: QualityControl.State, history: QCHistory) {
        let id = try store { try recorder.addQC(device: device, at: now(), bmdGCm2: bmdGCm2, capture: capture, by: by) }
        let (state, history) = try qcState(device: device, rules: rules)
        // The tenth scan after a service reset completes the cross-calibration with the ten
        // before it (docs/qc.md); stored once.
        if history.reset != nil, history.measurements.count == Self.crossCalibrationScans {
            do {
                let before = try store { try recorder.qcPreviousHistory(device: device) }
                let record = try QualityControl.crossCalibration(before: before, after: history.measurements, scans: Self.crossCalibrationScans)
                try store { try recorder.saveCrossCalibration(device: device, at: now(), record) }
                logger.notice("cross-calibration \(record.passes ? "passed" : "FAILED")", metadata: ["device": "\(device)"])
            } catch {
                logger.warning("no cross-calibration after the reset: \(error)", metadata: ["device": "\(device)"])
            }
        }
        return (id, state, history)
    }

    /// The rules' reading of `device`'s QC history since its latest reset.
    public func qcState(device: String, rules: QualityControl.Rules) throws(ExamError) -> (state: QualityControl.State, history: QCHistory) {
        let history = try store { try recorder.qcHistory(device: device) }
        return (QualityControl.evaluate(history.measurements, rules: rules), history)
    }

    /// A service action: a new QC history, and so a new baseline, from now.
    public func qcReset(device: String, by: String, reason: String) throws(ExamError) {
        try store { try recorder.resetQC(device: device, at: now(), by: by, reason: reason) }
        logger.notice("QC reset: a new baseline", metadata: ["device": "\(device)", "by": "\(by)", "reason": "\(reason)"])
    }

    /// What the QC state means for a patient exam starting now on `device` (`.clear` without a
    /// lockout).
    public func qcGate(device: String) throws(ExamError) -> QualityControl.Gate {
        guard let lockout = qcLockout else { return .clear }
        let (state, _) = try qcState(device: device, rules: lockout.rules)
        let lastScan = try store { try recorder.lastQCScan(device: device) }
        let override = try store { try recorder.qcOverride(device: device) }
        return QualityControl.gate(state, at: now(), lastScan: lastScan, override: override, policy: lockout.whenDue, calendar: lockout.calendar,
                                 dayStartMinutes: lockout.dayStartMinutes)
    }

    /// An exam in progress (its patient may be on the table), if any: a phantom scan must wait.
    public func examInProgress() throws(ExamError) -> Int64? {
        try store { try recorder.examsInProgress() }.first
    }

    /// Phantom scans on each side of a change that a cross-calibration compares (ISCD: 10).
    public static let crossCalibrationScans = 10

    /// The device's cross-calibration made since its latest reset, if any.
    public func crossCalibration(device: String, since: Date?) throws(ExamError) -> (at: Date, record: QualityControl.CrossCalibration)? {
        guard let since, let c = try store({ try recorder.crossCalibration(device: device) }), c.at >= since else { return nil }
        return c
    }

    /// The device's latest override of the lockout, in force or not.
    public func qcOverride(device: String) throws(ExamError) -> QualityControl.Override? {
        try store { try recorder.qcOverride(device: device) }
    }

    /// A service action: patient exams may start despite the QC state, until the next QC scan
    /// or the end of the day; every exam started under it carries the reason to its report.
    public func qcOverride(device: String, by: String, reason: String) throws(ExamError) {
        try store { try recorder.addQCOverride(device: device, at: now(), by: by, reason: reason) }
        logger.notice("QC lockout overridden", metadata: ["device": "\(device)", "by": "\(by)", "reason": "\(reason)"])
    }

    /// The sequencer's clock, for the caller's "due today".
    public var currentTime: Date { now() }

    /// The precision studies in force: the latest per device and ROI.
    public func precision() throws(ExamError) -> [PrecisionRecord] {
        try store { try recorder.precision(device: nil) }
    }

    /// The DICOM queue (`dicom.queue`): what waits for the hospital's systems, and whether it
    /// has waited longer than `alertAfterSeconds`. Read from the store; the DICOM service
    /// (its own process) fills and empties it.
    public func dicomQueue(examID: Int64?, alertAfterSeconds: Double) throws(ExamError) -> DicomQueueStatus {
        if let examID { _ = try stored(examID) }
        return DicomQueueStatus(objects: try store { try recorder.outbox(examID: examID) }, unbuilt: try store { try recorder.unbuiltResults(examID: examID) },
                                steps: try store { try recorder.performedSteps(examID: examID) }, now: now(), alertAfterSeconds: alertAfterSeconds)
    }

    /// A service engineer's resend of an exam's objects (or one of them): due again now.
    public func dicomResend(examID: Int64, objectID: Int64?, alertAfterSeconds: Double) throws(ExamError) -> DicomQueueStatus {
        _ = try stored(examID)
        let count = try store { try recorder.resend(examID: examID, objectID: objectID, at: now()) }
        if count == 0 { throw .correction(objectID.map { "exam \(examID) has no DICOM object \($0)" } ?? "exam \(examID) has no DICOM objects yet") }
        return try dicomQueue(examID: examID, alertAfterSeconds: alertAfterSeconds)
    }

    public func list(limit: Int) throws(ExamError) -> [ExamRecord] {
        var out: [ExamRecord] = []
        for e in try store({ try recorder.list(limit: limit) }) { out.append(try get(e.id)) }
        return out
    }

    /// At start-up: attempts that were running when the daemon died are marked interrupted,
    /// with the lines their capture holds (`countLines(capture, scanID)`). Their exams stay in
    /// progress: `exam.next` resumes with the interrupted site.
    public func recover(countLines: @Sendable (String, UInt32) -> Int?) throws(ExamError) -> [String] {
        var notes: [String] = []
        for r in try store({ try recorder.runningAttempts() }) {
            var a = r.attempt
            let counted = a.capture.flatMap { path in a.scanID.flatMap { countLines(path, $0) } }
            a.lines = counted ?? a.lines
            a.status = .interrupted
            a.reason = "the daemon stopped during the scan; \(a.lines) lines are in the capture"
            a.endedAt = stamp()
            try store { try recorder.finishAttempt(row: r.row, attempt: a) }
            notes.append("exam \(r.examID) \(a.site.rawValue) attempt \(a.attempt): interrupted with \(a.lines) lines")
        }
        // An exam that ended while the daemon stopped before publishing its results (a crash
        // between the two writes) is published now: the hospital gets every finished exam.
        for examID in try store({ try recorder.unpublishedExams() }) {
            publish(examID)
            notes.append("exam \(examID): results published for DICOM at start")
        }
        return notes
    }

    // MARK: - Steps that scan

    public func start(examID: Int64, observer: Observer? = nil) async throws -> StepResult {
        // The unit, awaited first: nothing below suspends between reading the exam's state and
        // changing it.
        guard let info = await session.info else { throw DeviceError.notConnected }
        let exam = try stored(examID)
        switch exam.state {
        case .ready: break
        case .created: throw ExamError.checklistIncomplete(try evaluate(exam).missing)
        case .blocked: throw ExamError.blocked(try evaluate(exam).blocks.map { $0.reason })
        default: throw ExamError.wrongState(examID, exam.state, "only a ready exam can start (exam.next continues one in progress)")
        }
        let status = try evaluate(exam)
        guard status.complete else { throw ExamError.checklistIncomplete(status.missing) }
        if let other = try store({ try recorder.examsInProgress() }).first(where: { $0 != examID }) {
            throw ExamError.anotherExamRunning(other)
        }
        switch calibration() {
        case .failure(let e): throw ExamError.notCalibrated("\(e)")
        case .success(let c): if let why = c.unitProblem(for: info) { throw ExamError.notCalibrated(why + "; run `dexa service calibrate` on this unit") }
        }
        var qcNote: String?
        switch try qcGate(device: CalibratedUnit(info).description) {
        case .clear: break
        case .blocked(let why): throw ExamError.qcLocked(why)
        case .warn(let why), .overridden(let why): qcNote = why
        }
        try store {
            try recorder.setState(examID: examID, state: .inProgress, at: now())
            if let qcNote { try recorder.addWarning(examID: examID, attemptRow: nil, warning: ExamWarning(kind: .qc, message: qcNote), at: now()) }
        }
        if let qcNote { logger.warning("exam \(examID) starts: \(qcNote)") }
        examClocks[examID] = Stopwatch(any: clock)
        return try await runNext(examID, observer: observer)
    }

    public func next(examID: Int64, observer: Observer? = nil) async throws -> StepResult {
        let exam = try stored(examID)
        guard exam.state == .inProgress else { throw ExamError.wrongState(examID, exam.state, "exam.next continues an exam in progress (exam.start begins one)") }
        if examClocks[examID] == nil { examClocks[examID] = Stopwatch(any: clock) }
        return try await runNext(examID, observer: observer)
    }

    /// Scans a site again (default: the last one scanned), whatever became of it before.
    public func repeatSite(examID: Int64, site: Site?, observer: Observer? = nil) async throws -> StepResult {
        let exam = try stored(examID)
        guard exam.state == .inProgress else { throw ExamError.wrongState(examID, exam.state, "only a site of an exam in progress can be repeated") }
        guard let target = site ?? exam.attempts.last(where: { $0.status != .skipped })?.site else { throw ExamError.nothingToRepeat(examID) }
        guard exam.plan.contains(target) else { throw ExamError.notInPlan(target) }
        return try await runSite(exam, target, observer: observer)
    }

    /// Stops the running step at once (X-rays off) and ends the exam. The cause is the one
    /// the technologist chose; nil when none was (the RIS's code is then read from the words,
    /// docs/dicom-conformance.md).
    public func abort(examID: Int64, reason: String, cause: AbortCause?) async throws(ExamError) -> ExamRecord {
        let exam = try stored(examID)
        guard [.created, .blocked, .ready, .inProgress].contains(exam.state) else { throw .wrongState(examID, exam.state, "it has already ended") }
        aborting.insert(examID)
        defer { aborting.remove(examID) }
        // The scan first: X-rays off does not wait for the database (locked, read-only).
        if running?.examID == examID {
            stepAborted = true
            abortLatch.set(true)
            do { _ = try await runner.abort() } catch { logger.error("abort: \(error)") }
            // The step records its attempt (aborted, with its lines and its dose) before the
            // exam ends: whatever reads the ended exam (the RIS's step, the dose report) sees
            // every exposure.
            while running?.examID == examID { await withCheckedContinuation { stepEndWaiters.append($0) } }
            // An outcome kept while the database refused writes goes in first.
            _ = try stored(examID)
        }
        let warning = ExamWarning(kind: .aborted, message: "exam aborted: \(reason)")
        guard try store({ try recorder.setAborted(examID: examID, cause: cause, warning: warning, at: now()) }) else {
            // The step completed the exam while X-rays were being turned off.
            let ended = try stored(examID)
            throw .wrongState(examID, ended.state, "it ended while the abort waited for its step")
        }
        examClocks[examID] = nil
        budgetWarned.remove(examID)
        publish(examID)
        return try get(examID)
    }

    /// The reason on the record of an attempt whose step's request was cancelled.
    static let cancelledReason = "cancelled: the client that ran the step went away, or dexad is stopping"

    private func runNext(_ examID: Int64, observer: Observer?) async throws -> StepResult {
        let exam = try stored(examID)
        guard let site = exam.nextSite else {
            try completeIfDone(examID)
            throw ExamError.allSitesDone(examID)
        }
        return try await runSite(exam, site, observer: observer)
    }

    /// One site: positioning, references and scan into one capture, live decomposition with
    /// the stillness and timing checks, the quick look; recorded before anything moves and
    /// after it ends, whatever way it ends.
    private func runSite(_ exam: StoredExam, _ site: Site, observer: Observer?) async throws -> StepResult {
        if let r = running { throw ExamError.stepRunning(r.examID, r.site) }
        if aborting.contains(exam.id) { throw ExamError.wrongState(exam.id, exam.state, "the exam is being aborted") }
        guard let scan = examProtocol.scan(site) else { throw ExamError.noProtocolScan(site) }
        let cal: Calibration
        switch calibration() {
        case .success(let c): cal = c
        case .failure(let e): throw ExamError.notCalibrated("\(e)")
        }
        // Claimed before the first await: a second request for a step cannot pass the check
        // above while this one waits.
        let examID = exam.id
        running = (examID, site)
        stepAborted = false
        abortLatch.set(false)
        defer {
            running = nil
            let waiters = stepEndWaiters
            stepEndWaiters = []
            for w in waiters { w.resume() }
        }
        guard let info = await session.info else { throw DeviceError.notConnected }
        // Aborted while this step waited for the session: nothing moves, nothing exposes.
        if stepAborted { throw ExamError.wrongState(examID, .aborted, "the exam was aborted before its step began") }
        // Another unit's calibration (a file copied across, or the device swapped under a
        // running daemon) would measure this patient with the wrong tube and detector.
        if let why = cal.unitProblem(for: info) { throw ExamError.notCalibrated(why + "; run `dexa service calibrate` on this unit") }

        // Room on the capture disk for the step's two captures (the scout's and the site's)
        // before anything is recorded, moves or exposes.
        let references = ScanPlan.references(xUm: scan.xUm, info: info, region: site)
        try await runner.checkRoom(for: references + references + [scan.plan(region: site)], channels: Int(info.channels))

        var attempt = SiteAttempt(site: site, attempt: exam.attempts.filter { $0.site == site }.count + 1, status: .running,
                                  plannedLines: Int(scan.lines), startedAt: stamp())
        attempt.device = "\(info.model) \(info.serial)"
        let row = try store { try recorder.beginAttempt(examID: examID, attempt: attempt) }
        let live = LiveStep(examID: examID, site: site, row: row, periodUs: scan.linePeriodUs, linesPerFrame: Int(scan.linesPerFrame),
                            motionLimitMM: examProtocol.motionLimitMM, recorder: recorder, observer: observer, now: now)

        observer?(.step(examID: examID, site: site, phase: "positioning"))
        let outcome: ScanOutcome
        var analysis: LiveSequenceAnalysis?
        var flushRows: (@Sendable () -> Void)?
        do {
            _ = try await Positioning.move(.move(xUm: scan.xUm, yUm: scan.yStartUm, armAngle: scan.armAngleX10), session: session, clock: clock)
            // The exam was aborted while the table moved: nothing is exposed.
            if stepAborted { throw ScanError.ended(.notStarted(scan.plan(region: site), id: 0, reason: "the exam was aborted during positioning")) }
            var sitePlan = scan.plan(region: site)
            sitePlan.patient = CapturePatient(sex: exam.patient.sex.rawValue, birthDate: exam.patient.birthDate)
            if scan.scanMode == .dual {
                // The scout: a dark scan and a few fast lines over the site, in a capture of
                // their own; the exposure mode (thin, standard, thick) from what they show.
                observer?(.step(examID: examID, site: site, phase: "scout"))
                let scout = ExposureModeChooser.scout(of: sitePlan.configuration(id: 0))
                let scoutPlan = ScanPlan(mode: .dual, xUm: scout.xUm, yStartUm: scout.yStartUm, lineCount: scout.lineCount,
                                         lineStepUm: scout.lineStepUm, linePeriodUs: scout.linePeriodUs, tubeCurrentUA: scout.tubeCurrentUA,
                                         linesPerFrame: scout.linesPerFrame, role: .patient, region: site)
                let collected = ScoutLines()
                let scoutOutcomes: [ScanOutcome], scoutCapture: String?
                do {
                    // The scout's capture is the attempt's until the site's scan has its own:
                    // recorded before anything is exposed, like every capture.
                    (scoutOutcomes, scoutCapture) = try await runner.runSequence(
                        [ScanPlan.references(xUm: scan.xUm, info: info, region: site)[0], scoutPlan], phantom: nil,
                        onLines: { index, lines in collected.add(index, lines) },
                        onCapture: { [runner, abortLatch] path, ids in
                            live.captured(path: path, scanID: ids.last)
                            if abortLatch.isSet { Task { _ = try? await runner.abort() } }
                        },
                        onOutcome: { o in live.exposed(o) })
                } catch let ScanError.ended(o) {
                    // Aborted or cut short during the scout: the step ends here, and says so.
                    var ended = o
                    ended.reason = "during the scout: " + (o.reason ?? o.result.rawValue)
                    throw ScanError.ended(ended)
                }
                let (darkLines, scoutLines) = collected.lines
                let bmi = try? get(examID).checklist.bmi
                let whole = scoutOutcomes.count == 2 && scoutOutcomes.allSatisfy { $0.result == .completed }
                var choice: ExposureModeChooser.Choice
                if whole, let dark = try? DarkReference(lines: darkLines) {
                    choice = ExposureModeChooser().choose(scout: scoutLines, scoutPeriodUs: scout.linePeriodUs, scoutCurrentUA: scout.tubeCurrentUA,
                                                          dark: dark, periodUs: scan.linePeriodUs, currentUA: scan.tubeCurrentUA, bmi: bmi,
                                                          unmixing: cal.unmixing, boneNoise: cal.boneNoise)
                } else {
                    choice = ExposureModeChooser().choose(scout: [], scoutPeriodUs: 1, scoutCurrentUA: 1,
                                                          dark: DarkReference.empty, periodUs: 1, currentUA: 1, bmi: bmi)
                    choice.reason = "the scout was incomplete; " + choice.reason
                }
                sitePlan.tubeCurrentUA = choice.current(standard: scan.tubeCurrentUA)
                attempt.exposure = SiteExposure(choice, tubeCurrentUA: sitePlan.tubeCurrentUA, scoutCapture: scoutCapture)
                attempt.dose = live.snapshot().dose
                attempt.capture = scoutCapture
                // Best effort: the patient has had the scout's dose; a database that refuses
                // this write does not end the step (its final write carries all of it).
                _ = recordOrKeep(row: row, attempt)
                if stepAborted { throw ScanError.ended(.notStarted(sitePlan, id: 0, reason: "the exam was aborted after the scout")) }
                _ = try await Positioning.move(.move(xUm: scan.xUm, yUm: scan.yStartUm, armAngle: scan.armAngleX10), session: session, clock: clock)
                // An abort during that move found no scan to stop: nothing more is exposed.
                if stepAborted { throw ScanError.ended(.notStarted(sitePlan, id: 0, reason: "the exam was aborted during positioning")) }
            }
            observer?(.step(examID: examID, site: site, phase: "scanning"))
            let plans = ScanPlan.references(xUm: scan.xUm, info: info, region: site) + [sitePlan]
            // The image's rows for whoever follows the step, sent with the progress (about
            // every 100 ms) rather than one notification a line.
            let batch = observer == nil ? nil : RowBatch()
            let planned = Int(sitePlan.configuration(id: 0).lineCount)
            let flush: @Sendable () -> Void = {
                guard let rows = batch?.take(), !rows.isEmpty else { return }
                observer?(.image(examID: examID, site: site, ImageRows(plannedLines: planned, rows: rows)))
            }
            flushRows = flush
            var onLine: (@Sendable (DecomposedLine) -> Void)?
            if let batch { onLine = { line in batch.add(line) } }
            // Dual- and single-energy alike: a single-energy scan's lines make its image
            // (`SingleEnergyDecomposer`) and feed the stillness check.
            analysis = LiveSequenceAnalysis(
                calibration: cal, geometry: ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm)), rois: [],
                scans: plans.map { .init(role: $0.role, configuration: $0.configuration(id: 0)) },
                onMotion: { [runner] m in if live.motion(m) { Task { _ = try? await runner.abort() } } },
                onLine: onLine)
            let watcher = Task { [clock, session] in await live.watch(clock: clock, session: session) }
            defer { watcher.cancel() }
            let measured = plans.count - 1
            let (outcomes, _) = try await runner.runSequence(
                plans, phantom: nil,
                progress: { p in
                    guard live.isMeasured(p.scanID) else { return }
                    flush()
                    observer?(.progress(examID: examID, site: site, p))
                },
                onLines: { [analysis] index, lines in
                    analysis?.lines(lines, scan: index)
                    if index == measured { live.lines(lines) }
                },
                onCapture: { [runner, abortLatch] path, ids in
                    live.captured(path: path, scanID: ids.last)
                    if abortLatch.isSet { Task { _ = try? await runner.abort() } }
                },
                onOutcome: { o in live.exposed(o) })
            guard let last = outcomes.last else { throw ExamError.noScanRan(site) }
            outcome = last
        } catch let ScanError.ended(o) {
            outcome = o
        } catch let e as MotionError {
            // A cancelled wait for the gantry reads as a timeout or a lost link: say what it was.
            let why = Task.isCancelled ? Self.cancelledReason : e.description
            attempt.status = .aborted
            attempt.reason = why
            attempt.endedAt = stamp()
            attempt.dose = live.snapshot().dose.scans > 0 ? live.snapshot().dose : attempt.dose
            live.drain()
            _ = recordOrKeep(row: row, attempt)
            throw ExamError.positioningFailed(site, why)
        } catch {
            // Refused before the site's scan (busy, interlock, not ready): nothing more was
            // exposed; the scout's dose, if it ran, stays on the record.
            attempt.status = .aborted
            attempt.reason = Task.isCancelled ? Self.cancelledReason : "\(error)"
            attempt.endedAt = stamp()
            attempt.dose = live.snapshot().dose.scans > 0 ? live.snapshot().dose : attempt.dose
            live.drain()
            _ = recordOrKeep(row: row, attempt)
            throw error
        }

        // How it ended.
        let snapshot = live.snapshot()
        attempt.capture = outcome.capture ?? snapshot.capture
        attempt.scanID = outcome.scanID
        attempt.lines = outcome.lines
        attempt.endedAt = stamp()
        attempt.motion = snapshot.motion
        attempt.dose = snapshot.dose
        var warnings = snapshot.warnings
        if outcome.result == .completed {
            for w in live.finishTiming() { warnings.append(w); live.record(w) }
        }
        if snapshot.stoppedForMotion {
            attempt.status = .motion
            attempt.reason = String(format: "the patient moved %.1f mm at line %d: reposition and rescan (exam.next), or skip the site",
                                    snapshot.motion.last { $0.stopped }?.shiftMM ?? 0, snapshot.motion.last { $0.stopped }?.line ?? 0)
        } else {
            switch outcome.result {
            case .completed: attempt.status = .completed
            case .aborted: attempt.status = .aborted
            case .interrupted: attempt.status = .interrupted
            }
            attempt.reason = outcome.reason
        }
        if let analysis, attempt.status == .completed {
            observer?(.step(examID: examID, site: site, phase: "quick_look"))
            let finished = await analysis.finishWithScan()
            // The last rows, decomposed after the last progress.
            flushRows?()
            switch finished {
            case .success(let (r, decomposed)):
                let missed = r.complete ? nil : "the live pipeline missed lines: dexa analyze on the capture gives the full result"
                attempt.quickLook = scan.scanMode == .single
                    ? QuickLook(bonePixels: 0, boneAreaCm2: 0, meanBoneBMD: nil, complete: r.complete,
                                note: missed ?? "single-energy image: no bone mineral density; the vertebrae are measured on it")
                    : QuickLook(bonePixels: r.bonePixels, boneAreaCm2: (r.boneAreaCm2 * 100).rounded() / 100,
                                meanBoneBMD: r.meanBoneBMD.map { ($0 * 1000).rounded() / 1000 }, complete: r.complete, note: missed)
                // The decomposed scan, beside its capture, for the site's analysis.
                if let capture = attempt.capture {
                    var scan = decomposed
                    scan.provenance.capture = capture
                    scan.provenance.scanID = attempt.scanID ?? scan.provenance.scanID
                    scan.provenance.region = site.rawValue
                    scan.provenance.armAngleDeg = Double(examProtocol.scan(site)?.armAngleX10 ?? 0) / 10
                    let path = DecomposedScan.path(forCapture: capture)
                    do {
                        try scan.write(to: path)
                        attempt.decomposed = path
                    } catch {
                        warnings.append(ExamWarning(kind: .storage, message: "the decomposed scan was not kept (\(error)); dexa analyze makes it from the capture"))
                    }
                }
                // The site's analysis, the moment its scan is complete (the same call as
                // `dexa analyze` on the capture). A live decomposition that missed lines (a
                // busy machine) is not analysed: the result would depend on the load.
                if r.complete {
                    var scan = decomposed
                    scan.provenance.region = site.rawValue
                    let patient = PatientContext(sex: exam.patient.sex.rawValue, birthDate: exam.patient.birthDate, on: exam.startedAt ?? exam.createdAt)
                    switch SiteAnalysis.analyze(scan, patient: patient, reference: reference) {
                    case .success(let result): attempt.analysis = result
                    case .failure(let why): attempt.analysisNote = why.description
                    }
                } else {
                    attempt.analysisNote = "the live decomposition missed lines: no analysis from it; dexa analyze on the capture gives the full result"
                }
            case .failure(let e):
                attempt.quickLook = QuickLook(bonePixels: 0, boneAreaCm2: 0, meanBoneBMD: nil, complete: false, note: e.description)
            }
        }
        attempt.warnings = warnings
        live.drain()
        if let error = recordOrKeep(row: row, attempt) {
            let lines = attempt.capture.map { "\(attempt.lines) lines are in \($0)" } ?? "\(attempt.lines) lines"
            let why: String = if case .storage(let w) = error { w } else { "\(error)" }
            throw ExamError.storage("\(why); the \(site.title) scan itself ended \(attempt.status.rawValue) (\(lines)) and is recorded as soon as the database takes writes again")
        }
        observer?(.step(examID: examID, site: site, phase: "done"))

        // The exam's time against its budget.
        if let watch = examClocks[examID], !budgetWarned.contains(examID) {
            let minutes = watch.elapsed.milliseconds / 60_000
            if let longest = examProtocol.budgetMinutes.last, minutes > longest {
                budgetWarned.insert(examID)
                let w = ExamWarning(kind: .budget, message: String(format: "the exam has taken %.1f min, over its %.0f-minute budget", minutes, longest), value: minutes)
                try store { try recorder.addWarning(examID: examID, attemptRow: nil, warning: w, at: now()) }
                observer?(.warning(examID: examID, site: nil, w))
            }
        }
        if (try? stored(examID).state) == .inProgress { try completeIfDone(examID) }
        let record = try get(examID)
        let message: String
        switch attempt.status {
        case .completed: message = record.nextSite.map { "\(site.title) done; next: \($0.title) (exam.next)" } ?? "\(site.title) done; the exam is complete"
        case .motion: message = attempt.reason ?? "the patient moved"
        default: message = "\(site.title) \(attempt.status.rawValue): \(attempt.reason ?? "")"
        }
        return StepResult(exam: record, attempt: attempt, message: message)
    }

    private func completeIfDone(_ examID: Int64) throws(ExamError) {
        let exam = try stored(examID)
        guard exam.state == .inProgress, exam.nextSite == nil else { return }
        try store { try recorder.setState(examID: examID, state: .completed, at: now()) }
        if let watch = examClocks[examID] {
            let minutes = watch.elapsed.milliseconds / 60_000
            if let shortest = examProtocol.budgetMinutes.first, let longest = examProtocol.budgetMinutes.last, minutes < shortest || minutes > longest {
                let w = ExamWarning(kind: .budget, message: String(format: "the exam took %.1f min (budget %.0f to %.0f)", minutes, shortest, longest), value: minutes)
                try store { try recorder.addWarning(examID: examID, attemptRow: nil, warning: w, at: now()) }
            }
        }
        examClocks[examID] = nil
        budgetWarned.remove(examID)
        publish(examID)
    }

    /// Keeps the exam's results for the DICOM service (ExamRecorder.publishResults). A
    /// failure is logged and said by the DICOM queue's absence, never the step's: the exam
    /// itself is recorded.
    private func publish(_ examID: Int64) {
        do {
            let r = try results(examID)
            _ = try store { try recorder.publishResults(examID: examID, results: r, at: now()) }
        } catch {
            logger.warning("the results of exam \(examID) were not published for DICOM: \(error)")
        }
    }

    // MARK: - Helpers

    /// Writes an attempt's outcome, or keeps it (replacing an older kept one of the same row)
    /// to be written before the store is next read. Returns the failure, nil when written.
    private func recordOrKeep(row: Int64, _ attempt: SiteAttempt) -> ExamError? {
        unrecorded.removeAll { $0.row == row }
        do {
            try store { try recorder.finishAttempt(row: row, attempt: attempt) }
            return nil
        } catch {
            unrecorded.append((row, attempt))
            logger.error("a step's outcome could not be recorded; kept until the database takes it", metadata: ["row": "\(row)", "error": "\(error)"])
            return error
        }
    }

    private func stored(_ id: Int64) throws(ExamError) -> StoredExam {
        while let (row, attempt) = unrecorded.first {
            try store { try recorder.finishAttempt(row: row, attempt: attempt) }
            unrecorded.removeFirst()
            logger.notice("a step's outcome kept while the exam database refused writes is recorded now", metadata: ["row": "\(row)"])
        }
        guard let e = try store({ try recorder.exam(id) }) else { throw .unknownExam(id) }
        return e
    }

    private func evaluate(_ exam: StoredExam) throws(ExamError) -> ChecklistStatus {
        let answers = try store { try recorder.answers(examID: exam.id) }
        var status = Checklist.evaluate(answers, sex: exam.patient.sex, today: CalendarDay(now()), weightLimitKg: examProtocol.tableLimitKg)
        // Once started, the plan is the exam's own (skips and additions).
        if exam.state != .created && exam.state != .blocked && exam.state != .ready { status.plan = exam.plan }
        return status
    }

    private func stamp() -> String { now().formatted(.iso8601) }

    private func store<T>(_ body: () throws -> T) throws(ExamError) -> T {
        do { return try body() } catch let e as ExamError { throw e } catch { throw .storage("\(error)") }
    }
}

/// The scout's lines as they arrive from the runner (scan 0: dark, scan 1: the scout).
private final class ScoutLines: Sendable {
    private let state = Mutex(([ScanLine](), [ScanLine]()))
    func add(_ index: Int, _ lines: [ScanLine]) {
        state.withLock { if index == 0 { $0.0 += lines } else { $0.1 += lines } }
    }
    var lines: ([ScanLine], [ScanLine]) { state.withLock { $0 } }
}

/// A flag the sequencer sets and the runner's callbacks read (a mutex: written on the
/// sequencer's actor, read on the runner's).
private final class AbortLatch: Sendable {
    private let state = Mutex(false)
    func set(_ value: Bool) { state.withLock { $0 = value } }
    var isSet: Bool { state.withLock { $0 } }
}
