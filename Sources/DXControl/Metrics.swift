import DXAcquisition
import DXDevice

/// The daemon's counters for `dexa service metrics` (JSON); the same figures go to
/// swift-metrics and out in Prometheus text (DXDaemon's `DaemonTelemetry`).
public struct DaemonMetrics: Sendable, Codable, Equatable {
    public var link = LinkCounters()
    public var reconnects = 0
    public var scansCompleted = 0
    public var scansAborted = 0
    public var scansInterrupted = 0
    public var linesReceived = 0
    public var linesMissing = 0
    public var exposureMs: UInt64 = 0
    public var dapMGyCm2 = 0.0
    /// Of the above, what the host estimated for scans the device reported no dose for.
    public var estimatedExposureMs: UInt64 = 0
    public var estimatedDAPMGyCm2 = 0.0
    /// The longest gap between host frames during any scan (ICD §4: 250 ms at most).
    public var longestScanHostGapMs = 0.0
    public var uptimeSeconds = 0.0

    public enum CodingKeys: String, CodingKey {
        case link, reconnects
        case scansCompleted = "scans_completed", scansAborted = "scans_aborted", scansInterrupted = "scans_interrupted"
        case linesReceived = "lines_received", linesMissing = "lines_missing", exposureMs = "exposure_ms", dapMGyCm2 = "dap_mgy_cm2"
        case estimatedExposureMs = "estimated_exposure_ms", estimatedDAPMGyCm2 = "estimated_dap_mgy_cm2"
        case longestScanHostGapMs = "longest_scan_host_gap_ms", uptimeSeconds = "uptime_s"
    }

    public init() {}

    /// Counts one scan's outcome (the scan runner reports every scan it made).
    public mutating func count(_ o: ScanOutcome) {
        switch o.result {
        case .completed: scansCompleted += 1
        case .aborted: scansAborted += 1
        case .interrupted: scansInterrupted += 1
        }
        linesReceived += o.lines
        linesMissing += o.missingLines
        exposureMs += UInt64(o.exposureMs)
        dapMGyCm2 += o.dapMGyCm2
        if o.doseEstimated {
            estimatedExposureMs += UInt64(o.exposureMs)
            estimatedDAPMGyCm2 += o.dapMGyCm2
        }
        longestScanHostGapMs = max(longestScanHostGapMs, o.longestHostGapMs)
    }
}
