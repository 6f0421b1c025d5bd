import DXAcquisition

/// The methods of the control socket: one descriptor each. The daemon's dispatch, its access
/// control and its audit trail, the CLI's typed calls and the method list of
/// docs/control-protocol.md (a test holds them equal) all come from here.
public enum ControlMethod: String, CaseIterable, Sendable {
    case deviceInfo = "device.info"
    case deviceStatus = "device.status"
    case deviceHome = "device.home"
    case deviceMove = "device.move"
    case scanRun = "scan.run"
    case scanAbort = "scan.abort"
    case eventsSubscribe = "events.subscribe"
    case serviceSelftest = "service.selftest"
    case serviceSensors = "service.sensors"
    case serviceLog = "service.log"
    case serviceReport = "service.report"
    case serviceMetrics = "service.metrics"
    case serviceReset = "service.reset"
    case serviceCalibrate = "service.calibrate"
    case examCreate = "exam.create"
    case examChecklist = "exam.checklist"
    case examStart = "exam.start"
    case examNext = "exam.next"
    case examRepeat = "exam.repeat"
    case examSkip = "exam.skip"
    case examAdd = "exam.add"
    case examAbort = "exam.abort"
    case examGet = "exam.get"
    case examList = "exam.list"
    case examResults = "exam.results"
    case examCorrect = "exam.correct"
    case precisionStudy = "precision.study"
    case precisionList = "precision.list"
    case qcRun = "qc.run"
    case qcStatus = "qc.status"
    case qcReset = "qc.reset"
    case qcOverride = "qc.override"
    case dicomQueue = "dicom.queue"
    case dicomResend = "dicom.resend"

    /// The least role that may call it (docs/console.md): technologists run exams, position,
    /// read status and abort; raw scans and everything `service.*` need the service group.
    public var role: Role {
        // Exhaustive on purpose: a new method does not compile until it has a role.
        switch self {
        case .scanRun, .serviceSelftest, .serviceSensors, .serviceLog, .serviceReport, .serviceMetrics, .serviceReset, .serviceCalibrate, .qcReset,
             .qcOverride, .dicomResend:
            .service
        case .deviceInfo, .deviceStatus, .deviceHome, .deviceMove, .scanAbort, .eventsSubscribe,
             .examCreate, .examChecklist, .examStart, .examNext, .examRepeat, .examSkip, .examAdd, .examAbort, .examGet, .examList,
             .examResults, .examCorrect, .precisionStudy, .precisionList, .qcRun, .qcStatus, .dicomQueue:
            .technologist
        }
    }

    /// Methods that can start or stop an exposure, or change how every later result is judged
    /// (a precision study sets the LSC, a correction changes a patient's numbers, a QC result or
    /// reset decides whether the unit is in control): every call is written to the audit trail with its
    /// parameters, allowed or refused, and how it ended when it failed.
    /// Exhaustive on purpose, like `role`.
    public var audited: Bool {
        switch self {
        case .scanRun, .scanAbort, .serviceCalibrate, .examStart, .examNext, .examRepeat, .examAbort, .examCorrect, .precisionStudy, .qcRun, .qcReset,
             .qcOverride, .dicomResend: true
        case .deviceInfo, .deviceStatus, .deviceHome, .deviceMove, .eventsSubscribe, .serviceSelftest, .serviceSensors, .serviceLog,
             .serviceReport, .serviceMetrics, .serviceReset, .examCreate, .examChecklist, .examSkip, .examAdd, .examGet, .examList,
             .examResults, .precisionList, .qcStatus, .dicomQueue:
            false
        }
    }
}

/// A method with the types of its parameters and its result, for typed calls:
/// `try await connection.call(.examGet, ExamIDParams(examID: 3))` returns an `ExamRecord`.
public struct RPC<Params: Codable & Sendable, Result: Codable & Sendable>: Sendable {
    public let method: ControlMethod
    init(_ method: ControlMethod) { self.method = method }
}

extension RPC where Params == NoParams, Result == DeviceInfoResult { public static var deviceInfo: Self { .init(.deviceInfo) } }
extension RPC where Params == NoParams, Result == DeviceStatusResult { public static var deviceStatus: Self { .init(.deviceStatus) } }
extension RPC where Params == NoParams, Result == PositionResult { public static var deviceHome: Self { .init(.deviceHome) } }
extension RPC where Params == MoveParams, Result == PositionResult { public static var deviceMove: Self { .init(.deviceMove) } }
extension RPC where Params == ScanRunParams, Result == ScanReport { public static var scanRun: Self { .init(.scanRun) } }
extension RPC where Params == NoParams, Result == ScanAbortResult { public static var scanAbort: Self { .init(.scanAbort) } }
extension RPC where Params == SubscribeParams, Result == SubscribeResult { public static var eventsSubscribe: Self { .init(.eventsSubscribe) } }
extension RPC where Params == NoParams, Result == SelfTestResult { public static var serviceSelftest: Self { .init(.serviceSelftest) } }
extension RPC where Params == NoParams, Result == SensorsResult { public static var serviceSensors: Self { .init(.serviceSensors) } }
extension RPC where Params == LogParams, Result == LogResult { public static var serviceLog: Self { .init(.serviceLog) } }
extension RPC where Params == ReportParams, Result == ServiceReportResult { public static var serviceReport: Self { .init(.serviceReport) } }
extension RPC where Params == MetricsParams, Result == MetricsResult { public static var serviceMetrics: Self { .init(.serviceMetrics) } }
extension RPC where Params == NoParams, Result == ResetResult { public static var serviceReset: Self { .init(.serviceReset) } }
extension RPC where Params == CalibrateParams, Result == CalibrateResult { public static var serviceCalibrate: Self { .init(.serviceCalibrate) } }
extension RPC where Params == ExamCreateParams, Result == ExamRecord { public static var examCreate: Self { .init(.examCreate) } }
extension RPC where Params == ExamChecklistParams, Result == ExamRecord { public static var examChecklist: Self { .init(.examChecklist) } }
extension RPC where Params == ExamIDParams, Result == ExamStepResult {
    public static var examStart: Self { .init(.examStart) }
    public static var examNext: Self { .init(.examNext) }
}
extension RPC where Params == ExamRepeatParams, Result == ExamStepResult { public static var examRepeat: Self { .init(.examRepeat) } }
extension RPC where Params == ExamSkipParams, Result == ExamRecord { public static var examSkip: Self { .init(.examSkip) } }
extension RPC where Params == ExamAddParams, Result == ExamRecord { public static var examAdd: Self { .init(.examAdd) } }
extension RPC where Params == ExamAbortParams, Result == ExamRecord { public static var examAbort: Self { .init(.examAbort) } }
extension RPC where Params == ExamIDParams, Result == ExamRecord { public static var examGet: Self { .init(.examGet) } }
extension RPC where Params == ExamListParams, Result == ExamListResult { public static var examList: Self { .init(.examList) } }
extension RPC where Params == ExamIDParams, Result == ExamResults { public static var examResults: Self { .init(.examResults) } }
extension RPC where Params == ExamCorrectParams, Result == ExamCorrectResult { public static var examCorrect: Self { .init(.examCorrect) } }
extension RPC where Params == PrecisionStudyParams, Result == PrecisionStudyResult { public static var precisionStudy: Self { .init(.precisionStudy) } }
extension RPC where Params == NoParams, Result == PrecisionListResult { public static var precisionList: Self { .init(.precisionList) } }
extension RPC where Params == QCRunParams, Result == QCRunResult { public static var qcRun: Self { .init(.qcRun) } }
extension RPC where Params == QCStatusParams, Result == QCStatusResult { public static var qcStatus: Self { .init(.qcStatus) } }
extension RPC where Params == QCResetParams, Result == QCStatusResult { public static var qcReset: Self { .init(.qcReset) } }
extension RPC where Params == QCOverrideParams, Result == QCStatusResult { public static var qcOverride: Self { .init(.qcOverride) } }
extension RPC where Params == DicomQueueParams, Result == DicomQueueStatus { public static var dicomQueue: Self { .init(.dicomQueue) } }
extension RPC where Params == DicomResendParams, Result == DicomQueueStatus { public static var dicomResend: Self { .init(.dicomResend) } }

/// The notifications the daemon sends, each with its one type.
public enum ControlNotification: String, CaseIterable, Sendable {
    /// `ScanProgressNotice`, from `scan.run` and from an exam's scans.
    case scanProgress = "scan.progress"
    /// `DeviceEventNotice`, after `events.subscribe`.
    case event
    /// `ExamStepNotice`.
    case examStep = "exam.step"
    /// `ExamWarningNotice`.
    case examWarning = "exam.warning"
    /// `ScanImageNotice`: an exam site's image rows as they are decomposed.
    case scanImage = "scan.image"
}

/// A notification with its type: the client decodes `params` as `Params`.
public struct Notice<Params: Codable & Sendable>: Sendable {
    public let notification: ControlNotification

    /// The notification's parameters when `method` is this notification; nil otherwise or
    /// when they cannot be read.
    public func decode(_ method: String, _ params: JSONValue?) -> Params? {
        guard method == notification.rawValue, let params else { return nil }
        return try? params.decode(Params.self)
    }
}

extension Notice where Params == ScanProgressNotice { public static var scanProgress: Self { .init(notification: .scanProgress) } }
extension Notice where Params == DeviceEventNotice { public static var event: Self { .init(notification: .event) } }
extension Notice where Params == ExamStepNotice { public static var examStep: Self { .init(notification: .examStep) } }
extension Notice where Params == ScanImageNotice { public static var scanImage: Self { .init(notification: .scanImage) } }
extension Notice where Params == ExamWarningNotice { public static var examWarning: Self { .init(notification: .examWarning) } }
