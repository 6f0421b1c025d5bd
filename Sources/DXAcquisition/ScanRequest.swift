import DXProtocol

/// A service engineer's raw scan (`scan.run`, `dexa scan`): every field the request leaves
/// out takes its default here, the one place the defaults live (docs/control-protocol.md):
/// dual energy, 200 lines from y = 500 mm in 1 mm steps at the device's fastest line period,
/// 1000 µA, 16 lines per frame, the carriage at mid travel; the role `dark` for a dark scan,
/// `air` when the scan starts in the air zone, `qc` otherwise.
public struct ScanRequest: Sendable, Equatable, Codable {
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

    /// The request's names on the control socket (`scan.run`, docs/control-protocol.md).
    public enum CodingKeys: String, CodingKey {
        case mode, lines, role, region
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

    /// The plan for `info`'s device. Throws `ScanError.rejected` naming the field for a mode,
    /// role or region that does not exist, or a patient scan without a region; the device's
    /// limits are checked when the scan is configured.
    public func plan(for info: DeviceInfo, phantom: Phantom? = nil) throws(ScanError) -> ScanPlan {
        guard let mode = ScanMode(name: mode ?? "dual") else { throw .rejected("mode must be dark, dual or single, not \(mode ?? "")") }
        let yStart = yStartUm ?? 500_000
        let role: CaptureScan.Role
        if let r = self.role {
            guard let parsed = CaptureScan.Role(rawValue: r) else {
                throw .rejected("role must be one of \(CaptureScan.Role.allCases.map(\.rawValue).joined(separator: ", ")), not \(r)")
            }
            role = parsed
        } else {
            role = mode == .dark ? .dark : (Int64(yStart) >= Int64(info.airZoneYUm) ? .air : .qc)
        }
        var region: CaptureScan.Region?
        if let r = self.region {
            guard let parsed = CaptureScan.Region(rawValue: r) else {
                throw .rejected("region must be one of \(CaptureScan.Region.allCases.map(\.rawValue).joined(separator: ", ")), not \(r)")
            }
            region = parsed
        }
        if role == .patient && region == nil { throw .rejected("a patient scan needs a region (ap_spine, left_hip, right_hip, lateral_spine)") }
        return ScanPlan(
            mode: mode, xUm: xUm ?? Int32(clamping: info.travelXUm / 2), yStartUm: yStart, lineCount: lines ?? 200,
            lineStepUm: lineStepUm ?? 1000, linePeriodUs: linePeriodUs ?? UInt32(clamping: info.minLinePeriodUs),
            tubeCurrentUA: tubeCurrentUA ?? 1000, linesPerFrame: linesPerFrame ?? 16, role: role, region: region, phantom: phantom)
    }
}
