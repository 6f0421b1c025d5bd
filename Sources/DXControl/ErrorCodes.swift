import DXAcquisition
import DXDecomposition
import DXDevice
import DXProtocol

/// An error that knows its JSON-RPC code and message. Every error type that can reach the
/// control socket says so here, once (the table is docs/control-protocol.md, "Errors";
/// `dexa` turns the codes into exit statuses, `ExitStatus`).
public protocol ControlReportable: Error {
    var rpcError: RPCError { get }
}

extension RPCError: ControlReportable {
    public var rpcError: RPCError { self }
}

extension RPCError {
    /// Any error as the client sees it: a reportable one by its own rule, cancellation as the
    /// request being cancelled, anything else as an internal error naming it.
    public static func from(_ error: any Error) -> RPCError {
        switch error {
        case let e as any ControlReportable: e.rpcError
        case is CancellationError: RPCError(code: deviceErrorCode, message: "request cancelled")
        default: RPCError(code: internalErrorCode, message: "internal error: \(error)")
        }
    }
}

extension StrictDecoder.Failure: ControlReportable {
    public var rpcError: RPCError { .invalidParams(description) }
}

extension DeviceError: ControlReportable {
    public var rpcError: RPCError {
        switch self {
        case .notConnected, .linkLost: RPCError(code: RPCError.notConnectedCode, message: description)
        case .refused(_, .interlockOpen, _): RPCError(code: RPCError.interlockCode, message: description)
        case .refused(_, .busy, _): RPCError(code: RPCError.busyCode, message: description)
        case .refused(_, .badParams, _): RPCError(code: RPCError.invalidParamsCode, message: description)
        case .refused(_, .badState, _), .refused(_, .faultActive, _), .wrongState: RPCError(code: RPCError.notReadyCode, message: description)
        case .refused, .timeout, .badResponse: RPCError(code: RPCError.deviceErrorCode, message: description)
        }
    }
}

extension ScanError: ControlReportable {
    public var rpcError: RPCError {
        switch self {
        case .busy: RPCError(code: RPCError.busyCode, message: description)
        case .interlockOpen: RPCError(code: RPCError.interlockCode, message: description)
        case .deviceNotReady: RPCError(code: RPCError.notReadyCode, message: description)
        // Parameters the device's limits (GET_INFO) rule out: refused before anything is sent.
        case .rejected: RPCError(code: RPCError.invalidParamsCode, message: description)
        case .storage: RPCError(code: RPCError.storageCode, message: description)
        case .ended(let o): RPCError(code: RPCError.scanFailedCode, message: o.summary, data: try? JSONValue(encoding: ScanReport(o)))
        }
    }
}

extension MotionError: ControlReportable {
    public var rpcError: RPCError {
        switch self {
        case .linkLost: RPCError(code: RPCError.notConnectedCode, message: description)
        case .stopped: RPCError(code: RPCError.notReadyCode, message: description)
        case .timedOut: RPCError(code: RPCError.deviceErrorCode, message: description)
        }
    }
}

extension ExamError: ControlReportable {
    public var rpcError: RPCError {
        switch self {
        case .unknownExam, .invalidPatient, .noReferral, .invalidAnswer, .noSkipReason, .notInPlan, .precision, .correction:
            RPCError(code: RPCError.invalidParamsCode, message: description)
        case .wrongState, .checklistIncomplete, .blocked, .anotherExamRunning, .alreadyInPlan, .orderTaken, .nothingToRepeat, .allSitesDone:
            RPCError(code: RPCError.examStateCode, message: description)
        case .stepRunning: RPCError(code: RPCError.busyCode, message: description)
        case .notCalibrated: RPCError(code: RPCError.notCalibratedCode, message: description)
        case .qcLocked: RPCError(code: RPCError.qcLockedCode, message: description)
        case .positioningFailed: RPCError(code: RPCError.deviceErrorCode, message: description)
        case .storage: RPCError(code: RPCError.storageCode, message: description)
        case .noProtocolScan, .noScanRan: RPCError(code: RPCError.internalErrorCode, message: description)
        }
    }
}

extension DeviceReadiness.Failure: ControlReportable {
    public var rpcError: RPCError {
        switch self {
        case .notBack, .otherUnit: RPCError(code: RPCError.deviceErrorCode, message: description)
        case .notReady: RPCError(code: RPCError.notReadyCode, message: description)
        }
    }
}

extension AnalysisError: ControlReportable {
    public var rpcError: RPCError { RPCError(code: RPCError.deviceErrorCode, message: "calibration failed: \(description)") }
}

/// What `dexa` exits with (documented in `dexa --help` and docs/console.md): scripts and the
/// web console tell the causes apart without reading messages.
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case ok = 0
    /// The request failed for a reason not listed below (the message says which).
    case failure = 1
    /// An offline command (`dexa analyze`, `dexa capture`) could not do its work: an
    /// unreadable or damaged file, a calibration the acceptance rule refuses (ICD §9).
    case offlineFailure = 2
    /// Bad arguments or parameters: nothing was sent, or the daemon refused them unchanged.
    case badInput = 64
    /// dexad is not running, or its socket cannot be reached.
    case unreachable = 69
    /// The device is not connected, not ready (BOOT, SAFE, FAULT) or busy with another scan.
    case deviceUnavailable = 75
    /// An interlock is open.
    case interlock = 76
    /// Permission denied: the caller's groups do not allow the method.
    case permissionDenied = 77
    /// The scan or exam step ran but did not complete (aborted, interrupted).
    case scanFailed = 3
    /// The daemon cannot write: the capture disk is full, the exam database is read-only or
    /// locked (sysexits' EX_IOERR).
    case storage = 74
    /// The exam is in the wrong state for the request, or there is no valid calibration.
    case examState = 4

    public static func forCode(_ code: Int) -> ExitStatus {
        switch code {
        case RPCError.invalidParamsCode, RPCError.methodNotFoundCode, RPCError.invalidRequestCode, RPCError.parseErrorCode: .badInput
        case RPCError.notConnectedCode, RPCError.busyCode, RPCError.notReadyCode: .deviceUnavailable
        case RPCError.interlockCode: .interlock
        case RPCError.forbiddenCode: .permissionDenied
        case RPCError.scanFailedCode: .scanFailed
        case RPCError.examStateCode, RPCError.notCalibratedCode, RPCError.qcLockedCode: .examState
        case RPCError.storageCode: .storage
        default: .failure
        }
    }

    public var meaning: String {
        switch self {
        case .ok: "success"
        case .failure: "the request failed (the message says why)"
        case .offlineFailure: "an offline command could not do its work (an unreadable file, a refused calibration)"
        case .badInput: "bad arguments or parameters; nothing was done"
        case .unreachable: "dexad is not running or its socket cannot be reached"
        case .deviceUnavailable: "the DX-1 is not connected, not ready, or busy"
        case .interlock: "an interlock is open"
        case .permissionDenied: "permission denied"
        case .scanFailed: "the scan did not complete (aborted or interrupted)"
        case .examState: "the exam is in the wrong state, or there is no valid calibration"
        case .storage: "dexad cannot write: the capture disk is full, or the exam database is read-only or locked"
        }
    }
}
