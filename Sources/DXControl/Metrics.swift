import DXAcquisition
import DXDevice

/// The daemon's counters for `dexa service metrics`, as JSON or Prometheus text.
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

    /// Prometheus text exposition format (version 0.0.4).
    public var prometheus: String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: Double, labels: String = "") {
            if !out.contains("# TYPE dexa_\(name) ") {
                out += "# HELP dexa_\(name) \(help)\n# TYPE dexa_\(name) \(type)\n"
            }
            let v = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
            out += "dexa_\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(v)\n"
        }
        metric("frames_total", "counter", "Frames received from the device.", Double(link.responses), labels: "kind=\"response\"")
        metric("frames_total", "counter", "Frames received from the device.", Double(link.events), labels: "kind=\"event\"")
        metric("frames_total", "counter", "Frames received from the device.", Double(link.dataFrames), labels: "kind=\"data\"")
        metric("crc_errors_total", "counter", "Frames whose CRC did not match.", Double(link.responseErrors.crcErrors), labels: "endpoint=\"0x81\"")
        metric("crc_errors_total", "counter", "Frames whose CRC did not match.", Double(link.dataErrors.crcErrors), labels: "endpoint=\"0x82\"")
        metric("resyncs_total", "counter", "Losses of frame sync.", Double(link.responseErrors.resyncs), labels: "endpoint=\"0x81\"")
        metric("resyncs_total", "counter", "Losses of frame sync.", Double(link.dataErrors.resyncs), labels: "endpoint=\"0x82\"")
        metric("data_gaps_total", "counter", "Gaps in the data frame sequence.", Double(link.dataGaps))
        metric("data_frames_missing_total", "counter", "Data frames the gaps account for.", Double(link.missingDataFrames))
        metric("lines_dropped_total", "counter", "Lines dropped by a full scan feed.", Double(link.linesDropped), labels: "stage=\"scan_feed\"")
        metric("commands_total", "counter", "Commands sent.", Double(link.commandsSent))
        metric("command_timeouts_total", "counter", "Commands that were not answered in time.", Double(link.timeouts))
        metric("heartbeats_total", "counter", "Heartbeats sent.", Double(link.heartbeatsSent))
        metric("reconnects_total", "counter", "Times the device link was re-established.", Double(reconnects))
        metric("scans_total", "counter", "Scans by result.", Double(scansCompleted), labels: "result=\"completed\"")
        metric("scans_total", "counter", "Scans by result.", Double(scansAborted), labels: "result=\"aborted\"")
        metric("scans_total", "counter", "Scans by result.", Double(scansInterrupted), labels: "result=\"interrupted\"")
        metric("lines_total", "counter", "Scan lines received.", Double(linesReceived))
        metric("lines_missing_total", "counter", "Scan lines that never arrived.", Double(linesMissing))
        metric("exposure_seconds_total", "counter", "X-ray exposure time.", Double(exposureMs) / 1000)
        metric("dap_mgy_cm2_total", "counter", "Dose-area product delivered.", dapMGyCm2)
        metric("estimated_exposure_seconds_total", "counter", "Exposure time estimated by the host (scans the device reported none for).", Double(estimatedExposureMs) / 1000)
        metric("estimated_dap_mgy_cm2_total", "counter", "Dose-area product estimated by the host.", estimatedDAPMGyCm2)
        metric("scan_host_gap_max_seconds", "gauge", "Longest gap between host frames during a scan.", longestScanHostGapMs / 1000)
        metric("uptime_seconds", "gauge", "Seconds since the daemon started.", uptimeSeconds)
        return out
    }
}
