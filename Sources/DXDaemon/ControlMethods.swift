import DXAcquisition
import DXClinical
import DXControl
import DXDecomposition
import DXDevice
import DXProtocol
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's answers to control-socket methods (docs/control-protocol.md): one typed
/// handler per method in one table. Access (the method's role), the audit trail (the
/// method's `audited`), strict parameters (`StrictDecoder`) and error codes
/// (`ControlReportable`) are the table's, the same for every method.
public struct DaemonControlHandler: ControlHandler {
    let table: MethodTable
    let audit: AuditLog
    let configuration: DaemonConfiguration
    let heap: HeapTrimmer

    /// `clock`: the daemon's, for the heap's trimming after requests (at most once a second).
    public init(device: DeviceService, exams: ExamSequencer, deviceName: String, audit: AuditLog, configuration: DaemonConfiguration,
                clock: any Clock<Duration>, logger: Logger) {
        self.audit = audit
        heap = HeapTrimmer(clock: clock)
        self.configuration = configuration
        table = Methods(device: device, exams: exams, deviceName: deviceName, configuration: configuration, hub: ExamNoticeHub()).table()
        // A method without a handler is a build that must not ship: it fails at start, and
        // every test that starts a daemon with it.
        precondition(table.methods == ControlMethod.allCases, "methods without a handler: \(Set(ControlMethod.allCases).subtracting(table.methods))")
    }

    /// The methods this daemon answers (every `ControlMethod`; a test holds them equal).
    public var methods: [ControlMethod] { table.methods }

    public func handle(_ request: RPCRequest, context: ControlContext) async throws -> JSONValue {
        guard let method = ControlMethod(rawValue: request.method), let handler = table.handler(method) else {
            throw RPCError.methodNotFound(request.method)
        }
        guard context.role >= method.role else {
            let why = "permission denied: \(method.rawValue) needs the \(configuration.serviceGroup) group"
            audit.record(peer: context.peer, role: context.role, method: method.rawValue, decision: "refused", detail: why)
            throw RPCError(code: RPCError.forbiddenCode, message: why)
        }
        // Audited methods: refused parameters are written as refused; accepted ones are
        // written before the call runs (an exposure is on the record even if the daemon dies
        // during it), and a call that then fails gets a second entry saying how.
        let entry: @Sendable (String, String?) -> Void = { decision, detail in
            audit.record(peer: context.peer, role: context.role, method: method.rawValue, decision: decision, detail: detail, params: request.params)
        }
        var accepted = false
        // A scan, a calibration, an analysis or a report frees tens of MB when it ends, an
        // exam's record or results some hundred kB: the free pages go back to the system
        // after requests, at most once a second (TrimSchedule; the clinic day, docs/RELIABILITY.md).
        defer { heap.requestEnded() }
        do {
            return try await handler(request.params, context) {
                accepted = true
                if method.audited { entry("allowed", nil) }
            }
        } catch {
            let e = RPCError.from(error)
            if method.audited { entry(accepted ? "failed" : "refused", "\(e.code): \(e.message)") }
            throw e
        }
    }
}


/// One typed handler per method. `on` decodes the parameters strictly (an unknown key, a
/// wrong type or a missing field is refused before the handler runs) and encodes the result.
struct MethodTable: Sendable {
    /// Decodes, says so through `accepted` (before anything happens), and runs.
    typealias Handler = @Sendable (JSONValue?, ControlContext, _ accepted: () -> Void) async throws -> JSONValue
    private var handlers: [ControlMethod: Handler] = [:]

    var methods: [ControlMethod] { ControlMethod.allCases.filter { handlers[$0] != nil } }
    func handler(_ method: ControlMethod) -> Handler? { handlers[method] }

    mutating func on<P, R>(_ rpc: RPC<P, R>, _ body: @escaping @Sendable (P, ControlContext) async throws -> R) {
        precondition(handlers[rpc.method] == nil, "\(rpc.method.rawValue) registered twice")
        handlers[rpc.method] = { params, context, accepted in
            if let params, case .array = params { throw RPCError.invalidParams("params must be an object (named parameters)") }
            let p = try StrictDecoder.decode(P.self, from: params ?? .object([:]))
            accepted()
            return try JSONValue(encoding: try await body(p, context))
        }
    }
}

/// What each method does.
private struct Methods: Sendable {
    let device: DeviceService
    let exams: ExamSequencer
    let deviceName: String
    let configuration: DaemonConfiguration
    /// The exams' notifications, for the subscribers that asked for them.
    let hub: ExamNoticeHub

    var session: DeviceSession { device.session }

    func table() -> MethodTable {
        var t = MethodTable()
        t.on(.deviceInfo) { _, _ in
            guard let info = await session.info, await session.connected else { throw DeviceError.notConnected }
            return DeviceInfoResult(device: info, transport: deviceName, connected: true)
        }
        t.on(.deviceStatus) { _, _ in DeviceStatusResult(try await session.refreshStatus(), link: await session.counters) }
        t.on(.deviceHome) { _, _ in try await move(.home) }
        t.on(.deviceMove) { p, _ in
            let arm = try p.armAngleX10.get()
            return try await move(.move(xUm: p.xUm, yUm: p.yUm, armAngle: arm))
        }
        t.on(.scanRun) { p, context in try await scan(p, context) }
        t.on(.scanAbort) { _, _ in ScanAbortResult(abortedScanID: try await device.runner.abort()) }
        t.on(.eventsSubscribe) { p, context in
            let notices = await session.notices()
            context.keepStreaming {
                for await n in notices { context.notify(.event, DeviceEventNotice(n)) }
            }
            if p.exams == true {
                let exams = hub.subscribe(connection: context.connectionID)
                context.keepStreaming {
                    for await n in exams { ExamNoticeHub.send(n, on: context) }
                }
            }
            return SubscribeResult(subscribed: true)
        }
        t.on(.serviceSelftest) { _, _ in SelfTestResult(try SelfTestReport(decoding: await session.execute(.selfTest, timeout: .seconds(10)))) }
        t.on(.serviceSensors) { _, _ in SensorsResult(try SensorReadings(decoding: await session.execute(.readSensors))) }
        t.on(.serviceLog) { p, _ in
            let r = try LogChunk(decoding: await session.execute(.getLog(offset: p.offset ?? 0, maxBytes: p.maxBytes ?? 4096)))
            return LogResult(nextOffset: r.nextOffset, text: r.text)
        }
        t.on(.serviceMetrics) { p, _ in
            // The DICOM queue is read from the store each time (dexa-dicomd changes it).
            device.recordDicomQueue(try? DicomQueueMetrics(await exams.dicomQueue(examID: nil, alertAfterSeconds: configuration.dicomQueueAlertSeconds)))
            return MetricsResult(metrics: await device.metrics(), text: p.format == .prometheus ? await device.prometheusText() : nil)
        }
        t.on(.serviceReport) { p, _ in
            let n = p.captures ?? 5
            guard (0...100).contains(n) else { throw RPCError.invalidParams("'captures': 0 to 100, not \(n)") }
            let queue = try? await exams.dicomQueue(examID: nil, alertAfterSeconds: configuration.dicomQueueAlertSeconds)
            return try await ServiceReport(device: device, configuration: configuration, deviceName: deviceName, dicomQueue: queue).build(captures: n)
        }
        t.on(.serviceReset) { _, _ in
            // Wall time: the unit's 3 s back on the bus (ICD §1) plus the host's reconnection,
            // which waits on udev and the link, not on the device's clock.
            let r = try await DeviceReadiness.reset(session: session, clock: ContinuousClock())
            return ResetResult(reconnected: true, serial: r.info.serial, afterMs: r.after.milliseconds.rounded(), state: r.state.description)
        }
        t.on(.serviceCalibrate) { p, _ in try await calibrate(p) }

        t.on(.examCreate) { p, context in
            try await exams.create(patient: p.patient, referral: p.referral, operatorName: p.operatorName ?? Self.user(context), scheduled: p.scheduled)
        }
        t.on(.examChecklist) { p, context in try await exams.checklist(examID: p.examID, answers: p.answers, by: Self.user(context)) }
        t.on(.examStart) { p, context in ExamStepResult(try await exams.start(examID: p.examID, observer: observer(context))) }
        t.on(.examNext) { p, context in ExamStepResult(try await exams.next(examID: p.examID, observer: observer(context))) }
        t.on(.examRepeat) { p, context in
            ExamStepResult(try await exams.repeatSite(examID: p.examID, site: p.site, observer: observer(context)))
        }
        t.on(.examSkip) { p, context in try await exams.skip(examID: p.examID, site: p.site, reason: p.reason, by: Self.user(context)) }
        t.on(.examAdd) { p, _ in try await exams.add(examID: p.examID, site: p.site) }
        t.on(.examAbort) { p, context in try await exams.abort(examID: p.examID, reason: p.reason ?? "aborted by \(Self.user(context))", cause: p.cause) }
        t.on(.examGet) { p, _ in try await exams.get(p.examID) }
        t.on(.examResults) { p, _ in try await exams.results(p.examID) }
        t.on(.examCorrect) { p, context in
            let r = try await exams.correct(examID: p.examID, site: p.site, request: p.request, by: Self.user(context))
            return ExamCorrectResult(correction: r.record, result: r.result)
        }
        t.on(.precisionStudy) { p, context in
            guard (2...500).contains(p.examIDs.count) else { throw RPCError.invalidParams("'exam_ids': 2 to 500 exams, not \(p.examIDs.count)") }
            let save = p.save ?? false
            return PrecisionStudyResult(try await exams.precisionStudy(examIDs: p.examIDs, save: save, by: Self.user(context)), saved: save)
        }
        t.on(.precisionList) { _, _ in PrecisionListResult(studies: try await exams.precision()) }
        t.on(.qcRun) { p, context in try await qcRun(p, by: Self.user(context)) }
        t.on(.qcStatus) { p, _ in try await qcStatus(device: try await connectedUnit(), withPoints: p.history ?? false) }
        t.on(.qcReset) { p, context in
            let reason = try Self.serviceReason(p.reason, what: "what was done (a calibration, a part replaced, the drift's cause)")
            let device = try await connectedUnit()
            try await exams.qcReset(device: device, by: Self.user(context), reason: reason)
            return try await qcStatus(device: device, withPoints: false)
        }
        t.on(.qcOverride) { p, context in
            let reason = try Self.serviceReason(p.reason, what: "why patients may be scanned despite the QC state")
            let device = try await connectedUnit()
            try await exams.qcOverride(device: device, by: Self.user(context), reason: reason)
            return try await qcStatus(device: device, withPoints: false)
        }
        t.on(.dicomQueue) { p, _ in try await exams.dicomQueue(examID: p.examID, alertAfterSeconds: configuration.dicomQueueAlertSeconds) }
        t.on(.dicomResend) { p, _ in
            try await exams.dicomResend(examID: p.examID, objectID: p.objectID, alertAfterSeconds: configuration.dicomQueueAlertSeconds)
        }
        t.on(.examList) { p, _ in
            let limit = p.limit ?? 20
            guard (1...500).contains(limit) else { throw RPCError.invalidParams("'limit': 1 to 500, not \(limit)") }
            return ExamListResult(exams: try await exams.list(limit: limit))
        }
        return t
    }

    /// HOME or MOVE, waiting for MOTION_DONE (or the move being cut short).
    private func move(_ command: Command) async throws -> PositionResult {
        let r = try await Positioning.move(command, session: session, clock: device.clock)
        return PositionResult(xUm: r.xUm, yUm: r.yUm, armAngleX10: r.armAngleX10)
    }

    /// `scan.run`: the plan from the request and its defaults (`ScanRequest`); a patient scan
    /// only with a valid calibration and always with its references.
    private func scan(_ p: ScanRunParams, _ context: ControlContext) async throws -> ScanReport {
        guard let info = await session.info else { throw DeviceError.notConnected }
        let phantom = try p.phantom.map { try Self.loadPhantom($0) }
        let plan = try p.request.plan(for: info, phantom: phantom)
        if let why = plan.configuration(id: 1).violation(for: info) { throw ScanError.rejected("scan parameters rejected: \(why)") }
        // Progress is for display: not queued for a client that has stopped reading (`send`).
        let progress: @Sendable (ScanProgress) -> Void = {
            if context.unsentLines <= ExamNoticeHub.unsentLimit { context.notify(.scanProgress, ScanProgressNotice($0)) }
        }
        var calibration: Calibration?
        var notDecomposed = "no valid calibration: the scan was recorded, not decomposed"
        switch CalibrationStore(stateDirectory: configuration.stateDirectory).load(for: info) {
        case .success(let c): calibration = c
        case .failure(let problem):
            if plan.role == .patient { throw problem }
            notDecomposed = "\(problem): the scan was recorded, not decomposed"
        }
        guard p.withReferences == true || plan.role == .patient else {
            return ScanReport(try await device.run(plan, progress: progress))
        }
        // Dark and air references, then the scan, into one capture; with a calibration the
        // scan is decomposed live as its lines arrive.
        let plans = ScanPlan.references(xUm: plan.xUm, info: info) + [plan]
        let live = calibration.map { cal in
            LiveSequenceAnalysis(calibration: cal, geometry: ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm)),
                                 rois: plan.phantom?.rois ?? [],
                                 scans: plans.map { .init(role: $0.role, configuration: $0.configuration(id: 0)) })
        }
        var sink: ScanRunner.LineSink?
        if let live { sink = { index, lines in live.lines(lines, scan: index) } }
        let (outcomes, _) = try await device.runner.runSequence(plans, phantom: plan.phantom, progress: progress, onLines: sink)
        guard let last = outcomes.last else { throw RPCError(code: RPCError.scanFailedCode, message: "no scan ran") }
        var report = ScanReport(last)
        switch await live?.finish() {
        case .success(let result)?:
            report.analysis = result
            report.calibration = calibration?.source
        case .failure(let e)?:
            report.analysisError = e.description
        case nil:
            report.analysisError = notDecomposed
        }
        return report
    }

    /// `service.calibrate`: the calibration run (`CalibrationRun`), stored only when the one
    /// acceptance rule passes; the calibration in use stays otherwise.
    private func calibrate(_ p: CalibrateParams) async throws -> CalibrateResult {
        let phantom = try Self.loadPhantom(p.phantom)
        try await refuseDuringAnExam("a calibration")
        guard let info = await session.info else { throw DeviceError.notConnected }
        let run: (calibration: Calibration, capture: String)
        do {
            run = try await CalibrationRun.run(runner: device.runner, phantom: phantom, info: info, lineStepUm: p.lineStepUm)
        } catch let e as CalibrationRun.Failure {
            if case .invalid(let why) = e { throw RPCError.invalidParams("\(p.phantom): \(why)") }
            throw RPCError(code: RPCError.deviceErrorCode, message: e.description)
        }
        let verdict = run.calibration.verdict
        guard verdict.accepted else {
            throw RPCError(code: RPCError.deviceErrorCode, message: "\(run.capture): \(verdict.description); the calibration in use is unchanged")
        }
        let store = CalibrationStore(stateDirectory: configuration.stateDirectory)
        try store.save(run.calibration)
        return CalibrateResult(file: store.path, capture: run.capture, calibration: run.calibration, verdict: verdict)
    }

    /// `qc.run`: the QC scan (`QCRun`) measured live with the unit's calibration; a usable
    /// result is stored and the rules read the history (docs/qc.md). Without a calibration of
    /// this unit's there is no QC: the scan is refused before anything moves.
    private func qcRun(_ p: QCRunParams, by: String) async throws -> QCRunResult {
        let phantom = try Self.loadPhantom(p.phantom)
        try await refuseDuringAnExam("a QC scan")
        guard let info = await session.info else { throw DeviceError.notConnected }
        var plans: [ScanPlan]
        do { plans = try QCRun.plans(phantom: phantom, info: info) } catch { throw RPCError.invalidParams("\(p.phantom): \(error.description)") }
        let calibration: Calibration
        switch CalibrationStore(stateDirectory: configuration.stateDirectory).load(for: info) {
        case .success(let c): calibration = c
        case .failure(let problem): throw problem
        }
        // The scout, in a capture of its own; the pass's current from what it shows.
        let scout = ScoutCollector()
        let (_, scoutCapture) = try await device.runner.runSequence(QCRun.scoutPlans(plans), phantom: phantom, onLines: { index, lines in scout.add(index, lines) })
        let choice: ExposureModeChooser.Choice
        do {
            let (dark, lines) = scout.lines
            (plans, choice) = try QCRun.exposed(plans, darkLines: dark, scoutLines: lines, unmixing: calibration.unmixing,
                                            boneNoise: calibration.boneNoise)
        } catch {
            throw RPCError(code: RPCError.scanFailedCode, message: "\(scoutCapture ?? "the QC scout"): \(error.description)")
        }
        let live = LiveSequenceAnalysis(calibration: calibration, geometry: ScanGeometry(channels: Int(info.channels), pitchUm: Int(info.pitchUm)),
                                        rois: phantom.rois ?? [], scans: plans.map { .init(role: $0.role, configuration: $0.configuration(id: 0)) })
        let (_, capture) = try await device.runner.runSequence(plans, phantom: phantom, onLines: { index, lines in live.lines(lines, scan: index) })
        let bmd: [String: Double]
        switch await live.finish() {
        case .success(let result):
            do { bmd = try QCRun.measurement(result, phantom: phantom) } catch {
                throw RPCError(code: RPCError.scanFailedCode, message: "\(capture ?? "the QC scan"): \(error.description)")
            }
        case .failure(let e):
            throw RPCError(code: RPCError.scanFailedCode, message: "\(capture ?? "the QC scan"): not a QC result, nothing added: \(e.description)")
        }
        let device = CalibratedUnit(info).description
        let rules = configuration.qcRules
        let r = try await exams.qcRecord(device: device, bmdGCm2: bmd, capture: capture, by: by, rules: rules)
        let status = try await qcStatus(device: device, withPoints: false)
        let verdict = r.state.points.last { $0.measurementID == r.id }?.verdict ?? .baseline
        return QCRunResult(measurementID: r.id, bmdGCm2: bmd, capture: capture, verdict: verdict, status: status,
                           exposure: .init(mode: choice.mode, tubeCurrentUA: plans.last?.tubeCurrentUA ?? 0, reason: choice.reason, scoutCapture: scoutCapture))
    }

    /// The connected unit as QC and its history name it (serial and calibration identity).
    private func connectedUnit() async throws -> String {
        guard let info = await session.info else { throw DeviceError.notConnected }
        return CalibratedUnit(info).description
    }

    private func qcStatus(device: String, withPoints: Bool) async throws -> QCStatusResult {
        let rules = configuration.qcRules
        let (state, history) = try await exams.qcState(device: device, rules: rules)
        return QCStatusResult(device: device, state: state, history: history, rules: rules,
                              due: QualityControl.isDue(state, at: await exams.currentTime, calendar: .current, dayStartMinutes: configuration.qcDayStartMinutes),
                              withPoints: withPoints,
                              gate: try await exams.qcGate(device: device), whenDue: configuration.qcWhenDue,
                              override: try await exams.qcOverride(device: device),
                              crossCalibration: try await exams.crossCalibration(device: device, since: history.reset?.at)?.record)
    }

    /// A phantom scan while an exam is in progress would expose the patient who may lie on the
    /// table between two sites: refused until the exam ends or is aborted.
    private func refuseDuringAnExam(_ what: String) async throws {
        if let exam = try await exams.examInProgress() {
            throw RPCError(code: RPCError.examStateCode, message: "exam \(exam) is in progress (its patient may be on the table): finish or abort it before \(what)")
        }
    }

    /// The scout's dark lines (scan 0) and its lines over the phantom (scan 1), as they arrive.
    final class ScoutCollector: Sendable {
        private let state = Mutex(([ScanLine](), [ScanLine]()))
        func add(_ index: Int, _ lines: [ScanLine]) { state.withLock { if index == 0 { $0.0 += lines } else { $0.1 += lines } } }
        var lines: ([ScanLine], [ScanLine]) { state.withLock { $0 } }
    }

    /// A service action's reason: 1 to 500 characters without control characters (it is
    /// audited, logged and printed on reports).
    static func serviceReason(_ text: String, what: String) throws -> String {
        let reason = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty, reason.count <= 500, !reason.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) }) else {
            throw RPCError.invalidParams("'reason': \(what), 1 to 500 characters without control characters")
        }
        return reason
    }

    static func loadPhantom(_ path: String) throws -> Phantom {
        guard let data = FileManager.default.contents(atPath: path) else { throw RPCError.invalidParams("cannot read the phantom file \(path)") }
        do { return try JSONDecoder().decode(Phantom.self, from: data) } catch {
            throw RPCError.invalidParams("\(path) is not an ICD §8 phantom: \(error)")
        }
    }

    /// The caller's login name (the audit trail and the checklist record who answered).
    static func user(_ context: ControlContext) -> String {
        guard let uid = context.peer?.uid else { return "unknown" }
        if let pw = getpwuid(uid), let name = pw.pointee.pw_name { return String(cString: name) }
        return "uid \(uid)"
    }

    /// Notifications on the caller's connection (`exam.step`, `exam.warning`, `scan.progress`,
    /// `scan.image`), and to the subscribers that asked for the exams' (`events.subscribe`
    /// with `exams`) on other connections.
    func observer(_ context: ControlContext) -> ExamSequencer.Observer {
        { [hub] notice in
            ExamNoticeHub.send(notice, on: context)
            hub.publish(notice, from: context.connectionID)
        }
    }
}
