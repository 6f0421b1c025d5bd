import DXAcquisition
import DXAnalysis
import DXClinical
import DXDecomposition
import DXDevice
import DXProtocol
import Foundation

// Every method's parameters and result, and every notification, as one type each
// (docs/control-protocol.md). One naming rule on the wire: snake_case keys, the unit in the
// name (`_um`, `_mm`, `_deg`, `_ms`, `_s`, `_c`, `_ua`, `_mgy_cm2`). Parameters are decoded
// by `StrictDecoder`: a key a method does not know is refused, never ignored.

/// The parameters of a method that takes none: absent, `{}` or `null`; any key is refused.
public struct NoParams: Codable, Sendable, Equatable {
    public init() {}
    public init(from decoder: any Decoder) throws { _ = try decoder.container(keyedBy: NoKeys.self) }
    public func encode(to encoder: any Encoder) throws { _ = encoder.container(keyedBy: NoKeys.self) }
    private enum NoKeys: CodingKey {}
}

// MARK: - device.*

/// `device.info`.
public struct DeviceInfoResult: Codable, Sendable, Equatable {
    public var device: DeviceInfo
    /// How the daemon reaches it: `usb:BUS-ADDR`, `socket:PATH`, `simulator`.
    public var transport: String
    public var connected: Bool
    public init(device: DeviceInfo, transport: String, connected: Bool) { self.device = device; self.transport = transport; self.connected = connected }
}

/// `device.status`: GET_STATUS in units, and the link's counters.
public struct DeviceStatusResult: Codable, Sendable, Equatable {
    public var state: String
    /// The ICD §4 interlock bits (1 = closed, safe) and the names of those open.
    public var interlocks: UInt16
    public var interlocksOpen: [String]
    public var xrayOn: Bool
    public var tubeTempC: Double
    public var detectorTempC: Double
    public var kv: Double
    public var tubeCurrentUA: UInt32
    public var armAngleDeg: Double
    public var xUm: Int32
    public var yUm: Int32
    public var fault: UInt16
    public var faultText: String
    public var activeScanID: UInt32
    public var link: LinkCounters

    public enum CodingKeys: String, CodingKey {
        case state, interlocks, kv, fault, link
        case interlocksOpen = "interlocks_open", xrayOn = "xray_on", tubeTempC = "tube_temp_c", detectorTempC = "detector_temp_c"
        case tubeCurrentUA = "tube_current_ua", armAngleDeg = "arm_angle_deg", xUm = "x_um", yUm = "y_um", faultText = "fault_text"
        case activeScanID = "active_scan_id"
    }

    public init(_ s: DeviceStatus, link: LinkCounters) {
        state = s.state.description; interlocks = s.interlocks.rawValue; interlocksOpen = s.interlocks.open; xrayOn = s.xrayOn
        tubeTempC = Double(s.tubeTempX10) / 10; detectorTempC = Double(s.detectorTempX10) / 10; kv = Double(s.kvX10) / 10
        tubeCurrentUA = s.tubeCurrentUA; armAngleDeg = Double(s.armAngleX10) / 10; xUm = s.xUm; yUm = s.yUm
        fault = s.fault.rawValue; faultText = s.fault.description; activeScanID = s.activeScanID; self.link = link
    }
}

/// `device.home`, `device.move`: where the gantry stopped (MOTION_DONE).
public struct PositionResult: Codable, Sendable, Equatable {
    public var xUm: Int32
    public var yUm: Int32
    public var armAngleDeg: Double
    public enum CodingKeys: String, CodingKey { case xUm = "x_um", yUm = "y_um", armAngleDeg = "arm_angle_deg" }
    public init(xUm: Int32, yUm: Int32, armAngleX10: Int16) { self.xUm = xUm; self.yUm = yUm; armAngleDeg = Double(armAngleX10) / 10 }
}

/// `device.move` parameters: the carriage in µm, the arm in degrees (0 AP, 90 lateral; the
/// device takes tenths, ICD §3, so a finer angle is refused).
public struct MoveParams: Codable, Sendable, Equatable {
    public var xUm: Int32
    public var yUm: Int32
    public var armAngleDeg: Double?
    public enum CodingKeys: String, CodingKey { case xUm = "x_um", yUm = "y_um", armAngleDeg = "arm_angle_deg" }
    public init(xUm: Int32, yUm: Int32, armAngleDeg: Double? = nil) { self.xUm = xUm; self.yUm = yUm; self.armAngleDeg = armAngleDeg }

    /// The arm angle in the device's tenths of a degree, within the arm's range (ICD §3:
    /// 0° AP to 90° lateral); the failure names the field.
    public var armAngleX10: Result<Int16, StrictDecoder.Failure> {
        let deg = armAngleDeg ?? 0
        let tenths = (deg * 10).rounded()
        let range = ICDMotion.armRangeX10
        guard deg.isFinite, abs(deg * 10 - tenths) < 1e-6, let v = Int16(exactly: tenths), range.contains(v) else {
            return .failure(.invalid("'arm_angle_deg': \(Double(range.lowerBound) / 10)° to \(Double(range.upperBound) / 10)° in tenths of a degree, not \(deg)"))
        }
        return .success(v)
    }
}

// MARK: - scan.*

/// `scan.run` parameters (docs/control-protocol.md): the scan request (`ScanRequest`, whose
/// defaults make a 200-line dual-energy scan at the device's maximum line rate), flat on the
/// wire beside the phantom and the references; its fields read as this type's own
/// (`params.lines`).
@dynamicMemberLookup
public struct ScanRunParams: Sendable, Equatable, Codable {
    public var request: ScanRequest
    /// Path of the ICD §8 JSON of the phantom on the table (its ROIs go into the capture header).
    public var phantom: String?
    /// Take a dark and an air scan first, into the same capture (what `dexa analyze` needs).
    public var withReferences: Bool?

    public enum CodingKeys: String, CodingKey { case phantom, withReferences = "with_references" }

    public subscript<T>(dynamicMember field: KeyPath<ScanRequest, T>) -> T { request[keyPath: field] }

    public init(mode: String? = nil, xUm: Int32? = nil, yStartUm: Int32? = nil, lines: UInt32? = nil, lineStepUm: Int32? = nil,
                linePeriodUs: UInt32? = nil, tubeCurrentUA: UInt32? = nil, linesPerFrame: UInt16? = nil, role: String? = nil,
                region: String? = nil, phantom: String? = nil, withReferences: Bool? = nil) {
        request = ScanRequest(mode: mode, xUm: xUm, yStartUm: yStartUm, lines: lines, lineStepUm: lineStepUm, linePeriodUs: linePeriodUs,
                              tubeCurrentUA: tubeCurrentUA, linesPerFrame: linesPerFrame, role: role, region: region)
        self.phantom = phantom
        self.withReferences = withReferences
    }

    public init(from decoder: any Decoder) throws {
        request = try ScanRequest(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        phantom = try c.decodeIfPresent(String.self, forKey: .phantom)
        withReferences = try c.decodeIfPresent(Bool.self, forKey: .withReferences)
    }

    public func encode(to encoder: any Encoder) throws {
        try request.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(phantom, forKey: .phantom)
        try c.encodeIfPresent(withReferences, forKey: .withReferences)
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
    /// With references and a valid calibration: the scan decomposed live, and the capture
    /// the calibration was fitted from; otherwise why there is no analysis.
    public var analysis: LiveResult?
    public var calibration: String?
    public var analysisError: String?

    public enum CodingKeys: String, CodingKey {
        case result, reason, mode, lines, gaps, capture, analysis, calibration
        case scanID = "scan_id", plannedLines = "planned_lines", missingFrames = "missing_frames", missingLines = "missing_lines"
        case exposureMs = "exposure_ms", dapMGyCm2 = "dap_mgy_cm2", doseEstimated = "dose_estimated", xrayOff = "xray_off"
        case longestHostGapMs = "longest_host_gap_ms", analysisError = "analysis_error"
    }

    public init(_ o: ScanOutcome) {
        scanID = o.scanID; result = o.result.rawValue; reason = o.reason; mode = o.mode.description; plannedLines = o.plannedLines
        lines = o.lines; gaps = o.gaps; missingFrames = o.missingFrames; missingLines = o.missingLines; exposureMs = o.exposureMs
        dapMGyCm2 = o.dapMGyCm2; doseEstimated = o.doseEstimated; capture = o.capture; xrayOff = o.xrayOffVerified
        longestHostGapMs = (o.longestHostGapMs * 10).rounded() / 10
    }
}

/// `scan.abort`: the scan stopped, if one ran.
public struct ScanAbortResult: Codable, Sendable, Equatable {
    public var abortedScanID: UInt32?
    public enum CodingKeys: String, CodingKey { case abortedScanID = "aborted_scan_id" }
    public init(abortedScanID: UInt32?) { self.abortedScanID = abortedScanID }
}

/// `scan.progress` notification: from `scan.run`, and with `exam_id` and `site` from an exam.
public struct ScanProgressNotice: Sendable, Equatable, Codable {
    public var examID: Int64?
    public var site: Site?
    public var scanID: UInt32
    public var lines: Int
    public var plannedLines: UInt32
    public var gaps: Int
    public var linesPerSecond: Double
    public var etaSeconds: Double

    public enum CodingKeys: String, CodingKey {
        case lines, gaps, site
        case examID = "exam_id", scanID = "scan_id", plannedLines = "planned_lines", linesPerSecond = "lines_per_s", etaSeconds = "eta_s"
    }

    public init(_ p: ScanProgress, examID: Int64? = nil, site: Site? = nil) {
        self.examID = examID; self.site = site; scanID = p.scanID; lines = p.lines; plannedLines = p.plannedLines; gaps = p.gaps
        linesPerSecond = p.linesPerSecond; etaSeconds = p.etaSeconds
    }
}

/// `scan.image`: rows of an exam site's bone image as the scan decomposes them (about every
/// 100 ms, just before `scan.progress`), for a screen to draw the image growing. Each row: the
/// line's number in the scan and its pixels in bytes, base64 (0: no number; 1–255: 0 to 2
/// g/cm² of bone mineral, `ImageRows`). A picture only: the figures are the analysis's.
public struct ScanImageNotice: Sendable, Equatable, Codable {
    public struct Row: Sendable, Equatable, Codable {
        public var line: Int
        public var bone: String
        public init(line: Int, bone: String) { self.line = line; self.bone = bone }
    }
    public var examID: Int64
    public var site: Site
    public var plannedLines: Int
    public var fullScaleGcm2: Double
    public var rows: [Row]

    public enum CodingKeys: String, CodingKey {
        case site, rows
        case examID = "exam_id", plannedLines = "planned_lines", fullScaleGcm2 = "full_scale_g_cm2"
    }

    public init(examID: Int64, site: Site, _ image: ImageRows) {
        self.examID = examID; self.site = site; plannedLines = image.plannedLines; fullScaleGcm2 = ImageRows.fullScale
        rows = image.rows.map { Row(line: $0.line, bone: Data($0.bone).base64EncodedString()) }
    }
}

// MARK: - events.subscribe

/// `events.subscribe`: the device's events, and with `exams` also the exams' notifications
/// (`exam.step`, `exam.warning`, `scan.progress`, `scan.image`) of steps that other connections
/// started (a step's own connection has them already), so that a screen shows an exam the CLI
/// runs as it runs.
public struct SubscribeParams: Codable, Sendable, Equatable {
    public var exams: Bool?
    public init(exams: Bool? = nil) { self.exams = exams }
}

public struct SubscribeResult: Codable, Sendable, Equatable {
    public var subscribed: Bool
    public init(subscribed: Bool) { self.subscribed = subscribed }
}

/// `event` notification: one device event (or link change), tagged by `type`; the fields
/// that type has are set, the others absent.
public struct DeviceEventNotice: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case connected, linkLost = "link_lost", dataGap = "data_gap", state, motionDone = "motion_done", scanStarted = "scan_started"
        case scanComplete = "scan_complete", scanAborted = "scan_aborted", interlocks, fault, watchdogExpired = "watchdog_expired"
        case faultCleared = "fault_cleared"
    }
    public var type: Kind
    public var serial: String?
    public var reason: String?
    public var missingFrames: UInt64?
    public var seq: UInt32?
    public var old: String?
    public var new: String?
    public var xUm: Int32?
    public var yUm: Int32?
    public var armAngleDeg: Double?
    public var scanID: UInt32?
    public var deviceTimeUs: UInt64?
    public var lines: UInt32?
    public var exposureMs: UInt32?
    public var dapMGyCm2: Double?
    public var interlocks: UInt16?
    public var interlocksOpen: [String]?
    public var code: UInt16?
    public var fault: String?
    public var message: String?

    public enum CodingKeys: String, CodingKey {
        case type, serial, reason, seq, old, new, lines, interlocks, code, fault, message
        case missingFrames = "missing_frames", xUm = "x_um", yUm = "y_um", armAngleDeg = "arm_angle_deg", scanID = "scan_id"
        case deviceTimeUs = "device_time_us", exposureMs = "exposure_ms", dapMGyCm2 = "dap_mgy_cm2", interlocksOpen = "interlocks_open"
    }

    public init(type: Kind) { self.type = type }

    public init(_ n: DeviceNotice) {
        switch n {
        case .connected(let info): self.init(type: .connected); serial = info.serial
        case .linkLost(let why): self.init(type: .linkLost); reason = why
        case let .dataGap(missing, at): self.init(type: .dataGap); missingFrames = missing; seq = at
        case .event(let e):
            switch e {
            case let .stateChanged(o, n): self.init(type: .state); old = o.description; new = n.description
            case let .motionDone(x, y, a): self.init(type: .motionDone); xUm = x; yUm = y; armAngleDeg = Double(a) / 10
            case let .scanStarted(id, t): self.init(type: .scanStarted); scanID = id; deviceTimeUs = UInt64(t)
            case let .scanComplete(id, l, ms, dap):
                self.init(type: .scanComplete); scanID = id; lines = UInt32(l); exposureMs = UInt32(ms); dapMGyCm2 = Double(dap) / 1000
            case let .scanAborted(id, r, l): self.init(type: .scanAborted); scanID = id; reason = r.description; lines = UInt32(l)
            case let .interlocksChanged(i): self.init(type: .interlocks); interlocks = i.rawValue; interlocksOpen = i.open
            case let .fault(c, m): self.init(type: .fault); code = c.rawValue; fault = c.description; message = m
            case .watchdogExpired: self.init(type: .watchdogExpired)
            case let .faultCleared(c): self.init(type: .faultCleared); code = c.rawValue; fault = c.description
            }
        }
    }
}

// MARK: - service.*

/// `service.selftest`.
public struct SelfTestResult: Codable, Sendable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public var component: String
        public var componentID: UInt8
        public var result: String
        public var value: Int32
        public var code: UInt16
        public enum CodingKeys: String, CodingKey { case component, result, value, code, componentID = "component_id" }
    }
    public var items: [Item]

    public init(_ r: SelfTestReport) {
        items = r.items.map { i in
            Item(component: i.component.description, componentID: i.component.rawValue, result: i.result.description.lowercased(), value: i.value, code: i.code)
        }
    }
}

/// `service.sensors`: READ_SENSORS in units.
public struct SensorsResult: Codable, Sendable, Equatable {
    public var tubeTempC: Double
    public var detectorTempC: Double
    public var generatorTempC: Double
    public var kv: Double
    public var tubeCurrentUA: UInt32
    public var supplyV: Double
    public var darkMean: UInt16
    public var uptimeS: UInt32
    public var droppedLines: UInt32
    public var usbErrors: UInt32

    public enum CodingKeys: String, CodingKey {
        case kv
        case tubeTempC = "tube_temp_c", detectorTempC = "detector_temp_c", generatorTempC = "generator_temp_c", tubeCurrentUA = "tube_current_ua"
        case supplyV = "supply_v", darkMean = "dark_mean_counts", uptimeS = "uptime_s", droppedLines = "dropped_lines", usbErrors = "usb_errors"
    }

    public init(_ r: SensorReadings) {
        tubeTempC = Double(r.tubeTempX10) / 10; detectorTempC = Double(r.detectorTempX10) / 10; generatorTempC = Double(r.generatorTempX10) / 10
        kv = Double(r.kvX10) / 10; tubeCurrentUA = r.tubeCurrentUA; supplyV = Double(r.supplyMv) / 1000; darkMean = r.darkMean
        uptimeS = r.uptimeS; droppedLines = r.droppedLines; usbErrors = r.usbErrors
    }
}

/// `service.log` parameters: where to start in the firmware log, and how much to read (bytes).
public struct LogParams: Sendable, Equatable, Codable {
    public var offset: UInt32?
    public var maxBytes: UInt16?
    public enum CodingKeys: String, CodingKey { case offset = "offset_bytes", maxBytes = "max_bytes" }
    public init(offset: UInt32? = nil, maxBytes: UInt16? = nil) { self.offset = offset; self.maxBytes = maxBytes }
}

/// `service.log`: a chunk of the firmware log.
public struct LogResult: Codable, Sendable, Equatable {
    public var nextOffset: UInt32
    public var text: String
    public enum CodingKeys: String, CodingKey { case text, nextOffset = "next_offset_bytes" }
    public init(nextOffset: UInt32, text: String) { self.nextOffset = nextOffset; self.text = text }
}

/// `service.report` parameters: how many recent captures to include (0 to 100, default 5).
public struct ReportParams: Codable, Sendable, Equatable {
    public var captures: Int?
    public init(captures: Int? = nil) { self.captures = captures }
}

/// `service.report`: the tarball for a service ticket.
public struct ServiceReportResult: Codable, Sendable, Equatable {
    public var name: String
    public var sizeBytes: Int
    public var contents: [String]
    public var tarGzBase64: String
    public enum CodingKeys: String, CodingKey { case name, contents, sizeBytes = "size_bytes", tarGzBase64 = "tar_gz_base64" }
    public init(name: String, sizeBytes: Int, contents: [String], tarGzBase64: String) {
        self.name = name; self.sizeBytes = sizeBytes; self.contents = contents; self.tarGzBase64 = tarGzBase64
    }
}

/// `service.metrics` parameters.
public struct MetricsParams: Codable, Sendable, Equatable {
    public enum Format: String, Codable, Sendable { case json, prometheus }
    public var format: Format?
    public init(format: Format? = nil) { self.format = format }
}

/// `service.metrics`: the counters, and with `format: prometheus` the same in Prometheus
/// text format (`text`).
public struct MetricsResult: Codable, Sendable, Equatable {
    public var metrics: DaemonMetrics
    public var text: String?
    public init(metrics: DaemonMetrics, text: String?) { self.metrics = metrics; self.text = text }
}

/// `service.reset`: the unit came back.
public struct ResetResult: Codable, Sendable, Equatable {
    public var reconnected: Bool
    public var serial: String
    public var afterMs: Double
    public var state: String
    public enum CodingKeys: String, CodingKey { case reconnected, serial, state, afterMs = "after_ms" }
    public init(reconnected: Bool, serial: String, afterMs: Double, state: String) {
        self.reconnected = reconnected; self.serial = serial; self.afterMs = afterMs; self.state = state
    }
}

/// `service.calibrate` parameters.
public struct CalibrateParams: Codable, Sendable, Equatable {
    /// The calibration phantom's ICD §8 JSON file, readable by dexad.
    public var phantom: String
    /// Line step of the calibration passes (1 to 100,000 µm; default the procedure's).
    public var lineStepUm: Int32?
    public enum CodingKeys: String, CodingKey { case phantom, lineStepUm = "line_step_um" }
    public init(phantom: String, lineStepUm: Int32? = nil) { self.phantom = phantom; self.lineStepUm = lineStepUm }
}

/// `service.calibrate`: the stored calibration and its acceptance figures.
public struct CalibrateResult: Codable, Sendable, Equatable {
    public var calibration: String
    public var capture: String
    public var version: Int
    public var cells: Int
    public var residualHydroxyapatiteGCm2: Double
    public var residualSoftTissueGCm2: Double
    public var residualFatFraction: Double
    public var noiseHydroxyapatiteGCm2: Double
    public var limitHydroxyapatiteGCm2: Double
    /// The detector's dead time measured from the two air scans (0: no rate loss seen).
    public var deadTimeNs: Double
    /// The scatter in the fan measured beside the phantom; absent when none was told from noise.
    public var scatterAmplitude: Double?
    public var scatterWidthMM: Double?
    /// Channels at the fan's ends that saw no cell's interior and took their neighbours'
    /// response (absent: every channel measured).
    public var inferredChannels: [Int]?
    /// The share of the low window's air counts found to be high-energy photons, taken out of
    /// every pixel (`LowWindowMixing`; absent: none found).
    public var lowWindowMixing: Double?
    /// Each window's effective spectrum fitted to the cells (`EffectiveSpectra`): its mean
    /// energy (keV, low then high) and its residual over the cells in units of their photon
    /// noise; absent where the cells gave none.
    public var spectraMeanKeV: [Double]?
    public var spectraResidualSigmas: [Double]?
    /// Whether the models were continued beyond the phantom's cells by the spectra (false: the
    /// cells' alone, the continuation having failed the rule; absent without spectra).
    public var modelsContinued: Bool?

    public enum CodingKeys: String, CodingKey {
        case calibration, capture, version, cells, inferredChannels = "inferred_channels", lowWindowMixing = "low_window_mixing"
        case spectraMeanKeV = "spectra_mean_kev", spectraResidualSigmas = "spectra_residual_sigmas", modelsContinued = "models_continued"
        case residualHydroxyapatiteGCm2 = "residual_hydroxyapatite_g_cm2", residualSoftTissueGCm2 = "residual_soft_tissue_g_cm2"
        case residualFatFraction = "residual_fat_fraction", noiseHydroxyapatiteGCm2 = "noise_hydroxyapatite_g_cm2"
        case limitHydroxyapatiteGCm2 = "limit_hydroxyapatite_g_cm2", deadTimeNs = "dead_time_ns"
        case scatterAmplitude = "scatter_amplitude", scatterWidthMM = "scatter_width_mm"
    }

    public init(file: String, capture: String, calibration c: Calibration, verdict: CalibrationVerdict) {
        calibration = file; self.capture = capture; version = c.version; cells = c.points.count
        residualHydroxyapatiteGCm2 = c.residualHydroxyapatite; residualSoftTissueGCm2 = c.residualSoftTissue
        residualFatFraction = c.residualFatFraction; noiseHydroxyapatiteGCm2 = verdict.noise; limitHydroxyapatiteGCm2 = verdict.limit
        deadTimeNs = (c.deadTimeUs ?? 0) * 1000
        scatterAmplitude = c.scatter?.amplitudeHigh
        scatterWidthMM = c.scatter.map { $0.widthUm / 1000 }
        inferredChannels = c.inferredChannels
        lowWindowMixing = c.lowWindowMixing
        spectraMeanKeV = c.spectra.map { [$0.meanEnergy(low: true), $0.meanEnergy(low: false)] }
        spectraResidualSigmas = c.spectra.map { [$0.residualLow, $0.residualHigh] }
        modelsContinued = c.spectra.map { _ in c.extensionSetAside == nil }
    }
}

// MARK: - exam.*

public struct ExamCreateParams: Codable, Sendable, Equatable {
    public var patient: PatientRecord
    public var referral: String
    /// The technologist (default: the caller's login).
    public var operatorName: String?
    /// The worklist's order the exam fulfils (`dexa exam new --worklist`); absent when typed in.
    public var scheduled: ScheduledProcedure?
    public enum CodingKeys: String, CodingKey { case patient, referral, scheduled, operatorName = "operator" }
    public init(patient: PatientRecord, referral: String, operatorName: String? = nil, scheduled: ScheduledProcedure? = nil) {
        self.patient = patient; self.referral = referral; self.operatorName = operatorName; self.scheduled = scheduled
    }
}

public struct ExamChecklistParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var answers: ChecklistAnswers
    public enum CodingKeys: String, CodingKey { case answers, examID = "exam_id" }
    public init(examID: Int64, answers: ChecklistAnswers) { self.examID = examID; self.answers = answers }
}

/// `exam.start`, `exam.next`, `exam.get`.
public struct ExamIDParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public enum CodingKeys: String, CodingKey { case examID = "exam_id" }
    public init(examID: Int64) { self.examID = examID }
}

/// `precision.study`: the exams of the study (each patient's repeated exams, one device);
/// `save` stores the result as the device's precision, from then on the follow-ups' LSC.
public struct PrecisionStudyParams: Codable, Sendable, Equatable {
    public var examIDs: [Int64]
    public var save: Bool?
    public enum CodingKeys: String, CodingKey { case save, examIDs = "exam_ids" }
    public init(examIDs: [Int64], save: Bool? = nil) { self.examIDs = examIDs; self.save = save }
}

/// `precision.study`: per monitored ROI (L1-L4, total_hip, neck) the RMS-SD, RMS-CV and LSC.
public struct PrecisionStudyResult: Codable, Sendable, Equatable {
    public var device: String
    public var rois: [PrecisionRecord]
    /// What was left out and why.
    public var notes: [String]
    public var saved: Bool
    public init(_ study: PrecisionStudy, saved: Bool) { device = study.device; rois = study.records; notes = study.notes; self.saved = saved }
}

/// `precision.list`: the studies in force, the latest per device and ROI.
public struct PrecisionListResult: Codable, Sendable, Equatable {
    public var studies: [PrecisionRecord]
    public init(studies: [PrecisionRecord]) { self.studies = studies }
}

/// `exam.repeat`: the site (default: the last one scanned).
public struct ExamRepeatParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var site: Site?
    public enum CodingKeys: String, CodingKey { case site, examID = "exam_id" }
    public init(examID: Int64, site: Site? = nil) { self.examID = examID; self.site = site }
}

public struct ExamSkipParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var site: Site
    public var reason: String
    public enum CodingKeys: String, CodingKey { case site, reason, examID = "exam_id" }
    public init(examID: Int64, site: Site, reason: String) { self.examID = examID; self.site = site; self.reason = reason }
}

/// `exam.correct`: a technologist's correction of a site's ROIs, with the reason. AP spine:
/// `disc_lines_mm` (every disc line's y, top to bottom) and/or `relabel` ({from, to}: the
/// vertebra now called `from` is `to`) or `l4_y_mm` (the level containing that y is L4); hips:
/// `neck_box_shift_mm` (along the neck, + towards the trochanter, from where the box is now);
/// `reset` goes back to the automatic ROIs. `attempt`: the attempt whose image the request was
/// made on (refused if the site's result is now another's).
public struct ExamCorrectParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var site: Site
    public var reason: String
    public var discLinesMM: [Double]?
    public var relabel: CorrectionRequest.Relabel?
    public var neckBoxShiftMM: Double?
    public var l4YMM: Double?
    public var reset: Bool?
    public var attempt: Int?
    /// Lateral spine: {"vertebra", "points": six [x, y] in mm}.
    public var vertebraPoints: CorrectionRequest.VertebraPoints?
    /// Lateral spine: {"vertebra", "grade", "type"}.
    public var vertebraGrade: CorrectionRequest.VertebraGrade?
    /// Lateral spine: a vertebra back to the analysis's points and grade.
    public var vertebraRestore: String?
    public enum CodingKeys: String, CodingKey {
        case site, reason, relabel, reset, attempt
        case examID = "exam_id", discLinesMM = "disc_lines_mm", neckBoxShiftMM = "neck_box_shift_mm", l4YMM = "l4_y_mm"
        case vertebraPoints = "vertebra_points", vertebraGrade = "vertebra_grade", vertebraRestore = "vertebra_restore"
    }
    public init(examID: Int64, site: Site, reason: String, discLinesMM: [Double]? = nil, relabel: CorrectionRequest.Relabel? = nil,
                l4YMM: Double? = nil, neckBoxShiftMM: Double? = nil, vertebraPoints: CorrectionRequest.VertebraPoints? = nil,
                vertebraGrade: CorrectionRequest.VertebraGrade? = nil, vertebraRestore: String? = nil, reset: Bool? = nil, attempt: Int? = nil) {
        self.examID = examID; self.site = site; self.reason = reason; self.discLinesMM = discLinesMM; self.relabel = relabel
        self.l4YMM = l4YMM; self.neckBoxShiftMM = neckBoxShiftMM; self.reset = reset; self.attempt = attempt
        self.vertebraPoints = vertebraPoints; self.vertebraGrade = vertebraGrade; self.vertebraRestore = vertebraRestore
    }
    public var request: CorrectionRequest {
        CorrectionRequest(discLinesMM: discLinesMM, relabel: relabel, l4YMM: l4YMM, neckBoxShiftMM: neckBoxShiftMM, vertebraPoints: vertebraPoints,
                          vertebraGrade: vertebraGrade, vertebraRestore: vertebraRestore, reset: reset ?? false, attempt: attempt, reason: reason)
    }
}

/// `exam.correct`'s answer: the correction as recorded (who, when, before and after) and the
/// site's new result.
public struct ExamCorrectResult: Codable, Sendable, Equatable {
    public var correction: CorrectionRecord
    public var result: SiteResult
    public init(correction: CorrectionRecord, result: SiteResult) { self.correction = correction; self.result = result }
}

public struct ExamAddParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var site: Site
    public enum CodingKeys: String, CodingKey { case site, examID = "exam_id" }
    public init(examID: Int64, site: Site) { self.examID = examID; self.site = site }
}

public struct ExamAbortParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var reason: String?
    /// Why, as the RIS hears it (CID 9301); absent: none chosen, the RIS's code is read from
    /// the reason's words.
    public var cause: AbortCause?
    public enum CodingKeys: String, CodingKey { case reason, cause, examID = "exam_id" }
    public init(examID: Int64, reason: String? = nil, cause: AbortCause? = nil) { self.examID = examID; self.reason = reason; self.cause = cause }
}

/// `dicom.queue`: one exam's objects, or every one.
public struct DicomQueueParams: Codable, Sendable, Equatable {
    public var examID: Int64?
    public enum CodingKeys: String, CodingKey { case examID = "exam_id" }
    public init(examID: Int64? = nil) { self.examID = examID }
}

/// `dicom.resend`: an exam's objects (or one, `object_id`) due again now.
public struct DicomResendParams: Codable, Sendable, Equatable {
    public var examID: Int64
    public var objectID: Int64?
    public enum CodingKeys: String, CodingKey { case examID = "exam_id", objectID = "object_id" }
    public init(examID: Int64, objectID: Int64? = nil) { self.examID = examID; self.objectID = objectID }
}

public struct ExamListParams: Codable, Sendable, Equatable {
    /// 1 to 500, default 20.
    public var limit: Int?
    public init(limit: Int? = nil) { self.limit = limit }
}

/// `exam.list`: newest first.
public struct ExamListResult: Codable, Sendable, Equatable {
    public var exams: [ExamRecord]
    public init(exams: [ExamRecord]) { self.exams = exams }
}

/// `exam.start`, `exam.next`, `exam.repeat`: the site's step.
public struct ExamStepResult: Codable, Sendable, Equatable {
    public var exam: ExamRecord
    public var attempt: SiteAttempt
    /// What the technologist does next, in words.
    public var message: String
    public init(_ s: StepResult) { exam = s.exam; attempt = s.attempt; message = s.message }
}

/// `exam.step` notification.
public struct ExamStepNotice: Codable, Sendable, Equatable {
    public var examID: Int64
    public var site: Site
    /// positioning, scout, scanning, quick_look, done.
    public var phase: String
    public enum CodingKeys: String, CodingKey { case site, phase, examID = "exam_id" }
    public init(examID: Int64, site: Site, phase: String) { self.examID = examID; self.site = site; self.phase = phase }
}

/// `exam.warning` notification.
public struct ExamWarningNotice: Codable, Sendable, Equatable {
    public var examID: Int64
    public var site: Site?
    public var kind: ExamWarning.Kind
    public var message: String
    public var line: Int?
    public var value: Double?
    public enum CodingKeys: String, CodingKey { case site, kind, message, line, value, examID = "exam_id" }
    public init(examID: Int64, site: Site?, warning w: ExamWarning) {
        self.examID = examID; self.site = site; kind = w.kind; message = w.message; line = w.line
        value = w.value.flatMap { $0.isFinite ? $0 : nil }
    }
}

// MARK: - Phantom QC (docs/qc.md)

/// `qc.run`: the QC scan of the phantom on the table.
public struct QCRunParams: Codable, Sendable, Equatable {
    /// The QC phantom's ICD §8 JSON file (its ROIs), readable by dexad.
    public var phantom: String
    public init(phantom: String) { self.phantom = phantom }
}

/// `qc.status` (and `qc.reset`'s result): the unit's QC state.
public struct QCStatusParams: Codable, Sendable, Equatable {
    /// Every result's reading too (the history), not only the state.
    public var history: Bool?
    public init(history: Bool? = nil) { self.history = history }
}

/// `qc.reset`: a service action (a calibration, a part replaced, a drift's cause found) that
/// starts a new history and so a new baseline.
public struct QCResetParams: Codable, Sendable, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// `qc.override`: a service engineer lets patient exams start despite the QC state (docs/qc.md,
/// "Lockout"): until the next QC scan or the end of the day; every report made under it says so.
public struct QCOverrideParams: Codable, Sendable, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

public struct QCStatusResult: Codable, Sendable, Equatable {
    public var device: String
    public var condition: QualityControl.State.Condition
    /// Why the unit is not in control, when it is not.
    public var reason: String?
    /// No passing result on this calendar day (the daemon's time zone).
    public var due: Bool
    public var warnings: [String]
    public var baseline: QualityControl.Baseline?
    /// Scans so far and scans the baseline needs.
    public var scans: Int
    public var baselineScans: Int
    /// ISO 8601 (UTC).
    public var lastPass: String?
    /// The service reset the history starts from: when (ISO 8601), by whom, why.
    public var reset: Reset?
    public struct Reset: Codable, Sendable, Equatable {
        public var at: String
        public var by: String
        public var reason: String
    }
    public var rules: QualityControl.Rules
    /// Every result's reading, oldest first (with `history`).
    public var points: [QualityControl.Point]?
    /// Every result itself, oldest first (with `history`): what a cross-calibration between
    /// units reads from a saved history.
    public var results: [QualityControl.Measurement]?
    /// What a patient exam starting now meets: `clear`, `warn`, `blocked` or `overridden`, the
    /// words it would carry, and the policy for "no QC today".
    public var patientExams: PatientExams
    public struct PatientExams: Codable, Sendable, Equatable {
        public var gate: String
        public var message: String?
        public var whenDue: QualityControl.DuePolicy
        public enum CodingKeys: String, CodingKey { case gate, message, whenDue = "when_due" }
    }
    /// The latest service override of the lockout (in force or not): when (ISO 8601), by whom, why.
    public var override: Reset?
    /// The cross-calibration of the ten scans before the latest reset with the ten after it,
    /// once there are ten after it.
    public var crossCalibration: QualityControl.CrossCalibration?

    public enum CodingKeys: String, CodingKey {
        case device, condition, reason, due, warnings, baseline, scans, rules, points, results, reset, override
        case crossCalibration = "cross_calibration"
        case baselineScans = "baseline_scans", lastPass = "last_pass", patientExams = "patient_exams"
    }

    public init(device: String, state: QualityControl.State, history: QCHistory, rules: QualityControl.Rules, due: Bool, withPoints: Bool,
                gate: QualityControl.Gate, whenDue: QualityControl.DuePolicy, override: QualityControl.Override?,
                crossCalibration: QualityControl.CrossCalibration? = nil) {
        self.crossCalibration = crossCalibration
        let name = switch gate {
        case .clear: "clear"
        case .warn: "warn"
        case .blocked: "blocked"
        case .overridden: "overridden"
        }
        patientExams = PatientExams(gate: name, message: gate.message, whenDue: whenDue)
        self.override = override.map { Reset(at: $0.at.formatted(.iso8601), by: $0.by, reason: $0.reason) }
        self.device = device
        condition = state.condition
        reason = state.reason
        self.due = due
        warnings = state.warnings
        baseline = state.baseline
        scans = history.measurements.count
        baselineScans = rules.baselineScans
        lastPass = state.lastPass?.formatted(.iso8601)
        reset = history.reset.map { Reset(at: $0.at.formatted(.iso8601), by: $0.by, reason: $0.reason) }
        self.rules = rules
        points = withPoints ? state.points : nil
        results = withPoints ? history.measurements : nil
    }
}

public struct QCRunResult: Codable, Sendable, Equatable {
    public var measurementID: Int64
    public var bmdGCm2: [String: Double]
    public var capture: String?
    /// This result's reading (`baseline` while the baseline fills).
    public var verdict: QualityControl.Verdict
    public var status: QCStatusResult
    /// The pass's exposure, chosen from a scout as for a patient's site.
    public var exposure: Exposure
    public struct Exposure: Codable, Sendable, Equatable {
        public var mode: ExposureMode
        public var tubeCurrentUA: UInt32
        public var reason: String
        public var scoutCapture: String?
        public init(mode: ExposureMode, tubeCurrentUA: UInt32, reason: String, scoutCapture: String?) {
            self.mode = mode; self.tubeCurrentUA = tubeCurrentUA; self.reason = reason; self.scoutCapture = scoutCapture
        }
        public enum CodingKeys: String, CodingKey {
            case mode, reason
            case tubeCurrentUA = "tube_current_ua", scoutCapture = "scout_capture"
        }
    }

    public enum CodingKeys: String, CodingKey {
        case capture, verdict, status, exposure
        case measurementID = "measurement_id", bmdGCm2 = "bmd_g_cm2"
    }
    public init(measurementID: Int64, bmdGCm2: [String: Double], capture: String?, verdict: QualityControl.Verdict, status: QCStatusResult,
                exposure: Exposure) {
        self.measurementID = measurementID; self.bmdGCm2 = bmdGCm2; self.capture = capture; self.verdict = verdict; self.status = status
        self.exposure = exposure
    }
}
