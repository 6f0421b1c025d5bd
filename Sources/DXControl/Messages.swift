import DXProtocol

/// `scan.run` parameters (docs/control-protocol.md). Every field is optional; the defaults
/// make a 200-line dual-energy scan at the device's maximum line rate.
public struct ScanRunParams: Sendable, Equatable, Codable {
    public var mode: String?
    public var xUm: Int32?
    public var yStartUm: Int32?
    public var lines: UInt32?
    public var lineStepUm: Int32?
    public var linePeriodUs: UInt32?
    public var tubeCurrentUA: UInt32?
    public var linesPerFrame: UInt16?
    public var role: String?
    public var region: String?
    /// Path of the ICD §8 JSON of the phantom on the table (its ROIs go into the capture header).
    public var phantom: String?
    /// Take a dark and an air scan first, into the same capture (what `dexa analyze` needs).
    public var withReferences: Bool?

    public enum CodingKeys: String, CodingKey {
        case mode, lines, role, region, phantom
        case withReferences = "with_references"
        case xUm = "x_um", yStartUm = "y_start_um", lineStepUm = "line_step_um", linePeriodUs = "line_period_us"
        case tubeCurrentUA = "tube_current_ua", linesPerFrame = "lines_per_frame"
    }

    public init(mode: String? = nil, xUm: Int32? = nil, yStartUm: Int32? = nil, lines: UInt32? = nil, lineStepUm: Int32? = nil,
                linePeriodUs: UInt32? = nil, tubeCurrentUA: UInt32? = nil, linesPerFrame: UInt16? = nil, role: String? = nil,
                region: String? = nil) {
        self.mode = mode; self.xUm = xUm; self.yStartUm = yStartUm; self.lines = lines; self.lineStepUm = lineStepUm
        self.linePeriodUs = linePeriodUs; self.tubeCurrentUA = tubeCurrentUA; self.linesPerFrame = linesPerFrame
        self.role = role; self.region = region
    }
}

/// `scan.run` result, and the `data` of its error when the scan did not complete.
public struct ScanReport: Sendable, Equatable, Codable {
    public var scanID: UInt32
    public var result: String
    public var reason: String?
    public var mode: String
    public var plannedLines: UInt32
    public var lines: Int
    public var gaps: Int
    public var missingFrames: UInt64
    public var missingLines: Int
    public var exposureMs: UInt32
    public var dapMGyCm2: Double
    /// Exposure and DAP are the host's estimate (the device reported none: an aborted or
    /// interrupted scan).
    public var doseEstimated: Bool
    public var capture: String?
    public var xrayOff: Bool
    /// Longest gap between host frames during the scan (ICD §4: 250 ms at most).
    public var longestHostGapMs: Double

    public enum CodingKeys: String, CodingKey {
        case result, reason, mode, lines, gaps, capture
        case scanID = "scan_id", plannedLines = "planned_lines", missingFrames = "missing_frames", missingLines = "missing_lines"
        case exposureMs = "exposure_ms", dapMGyCm2 = "dap_mgy_cm2", doseEstimated = "dose_estimated", xrayOff = "xray_off"
        case longestHostGapMs = "longest_host_gap_ms"
    }

    public init(scanID: UInt32, result: String, reason: String?, mode: String, plannedLines: UInt32, lines: Int, gaps: Int,
                missingFrames: UInt64, missingLines: Int, exposureMs: UInt32, dapMGyCm2: Double, doseEstimated: Bool, capture: String?,
                xrayOff: Bool, longestHostGapMs: Double) {
        self.scanID = scanID; self.result = result; self.reason = reason; self.mode = mode; self.plannedLines = plannedLines
        self.lines = lines; self.gaps = gaps; self.missingFrames = missingFrames; self.missingLines = missingLines; self.exposureMs = exposureMs
        self.dapMGyCm2 = dapMGyCm2; self.doseEstimated = doseEstimated; self.capture = capture; self.xrayOff = xrayOff
        self.longestHostGapMs = longestHostGapMs
    }
}

/// `scan.progress` notification parameters.
public struct ScanProgressNotice: Sendable, Equatable, Codable {
    public var scanID: UInt32
    public var lines: Int
    public var plannedLines: UInt32
    public var gaps: Int
    public var linesPerSecond: Double
    public var etaSeconds: Double

    public enum CodingKeys: String, CodingKey {
        case lines, gaps
        case scanID = "scan_id", plannedLines = "planned_lines", linesPerSecond = "lines_per_s", etaSeconds = "eta_s"
    }

    public init(scanID: UInt32, lines: Int, plannedLines: UInt32, gaps: Int, linesPerSecond: Double, etaSeconds: Double) {
        self.scanID = scanID; self.lines = lines; self.plannedLines = plannedLines; self.gaps = gaps
        self.linesPerSecond = linesPerSecond; self.etaSeconds = etaSeconds
    }
}

/// `device.move` parameters.
public struct MoveParams: Sendable, Equatable, Codable {
    public var xUm: Int32
    public var yUm: Int32
    public var armAngle: Int16?
    public enum CodingKeys: String, CodingKey { case xUm = "x_um", yUm = "y_um", armAngle = "arm_angle" }
    public init(xUm: Int32, yUm: Int32, armAngle: Int16? = nil) { self.xUm = xUm; self.yUm = yUm; self.armAngle = armAngle }
}

/// `service.log` parameters.
public struct LogParams: Sendable, Equatable, Codable {
    public var offset: UInt32?
    public var maxBytes: UInt16?
    public enum CodingKeys: String, CodingKey { case offset, maxBytes = "max_bytes" }
    public init(offset: UInt32? = nil, maxBytes: UInt16? = nil) { self.offset = offset; self.maxBytes = maxBytes }
}

/// The methods of the control socket.
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
}
