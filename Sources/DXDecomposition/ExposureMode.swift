import DXProtocol
import Foundation

/// Thin, standard or thick: the tube current a site's scan takes, chosen for the patient in
/// front of it so that the counts under the densest tissue stay where precision holds and the
/// thinnest tissue does not saturate (densitometers have had such modes since the fan-beam
/// generation: a thick patient is scanned slower or with more current).
public enum ExposureMode: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case thin, standard, thick

    /// The tube current as a multiple of the protocol's (standard) current.
    public var currentFactor: Double {
        switch self {
        case .thin: 0.5
        case .standard: 1
        case .thick: 2.5
        }
    }

    /// The ICD's highest tube current (CONFIGURE_SCAN refuses more).
    public static let maximumCurrentUA: UInt32 = 3000

    /// The protocol's current in this mode, within the ICD's range.
    public func current(standard: UInt32) -> UInt32 {
        UInt32(min(Double(Self.maximumCurrentUA), max(1, (Double(standard) * currentFactor).rounded())))
    }

    public var description: String { rawValue }
}

/// Chooses the exposure mode from a scout: a few fast lines over the site before its scan. The
/// scout's counts, scaled to the site scan's line period and current, predict the scan's:
///
/// - **thick** when a tenth of the central pixels would get fewer than `thickBelow` photons in
///   the low window (the densest tissue: bone under the most soft tissue). 150 photons keep those
///   pixels six times above the 25-photon low-count line and the log's bias under 0.01 %
///   (docs/physics.md);
/// - **thin** when the brightest tenth of the central pixels would count more than `thinAbove`
///   (55,000) in either window: within reach of the 16-bit ceiling once a channel's gain (up to
///   +8 %) and 5σ of noise are added (the
///   body's thin edges, outside the central half of the fan, may saturate in any mode);
/// - **standard** otherwise. Without a scout (no lines), the body mass index decides: under 18.5
///   thin, 30 and over thick (WHO classes).
public struct ExposureModeChooser: Sendable {
    public var thickBelow = 150.0
    public var thinAbove = 55_000.0
    /// The share of central pixels that must reach `thickBelow`.
    public var densestShare = 0.1

    public init() {}

    /// What the scout said and what was chosen, to record with the scan.
    public struct Choice: Sendable, Equatable, Codable {
        public var mode: ExposureMode
        /// Predicted low-window photons at the densest tenth of the central pixels in the
        /// standard mode, and the counts (either window) at the brightest tenth.
        public var predictedDensestCounts: Double?
        public var predictedBrightestCounts: Double?
        public var reason: String

        public enum CodingKeys: String, CodingKey {
            case mode, reason
            case predictedDensestCounts = "predicted_densest_counts", predictedBrightestCounts = "predicted_brightest_counts"
        }
    }

    /// `scout`: the scout's lines, taken with `scoutPeriodUs` and `scoutCurrentUA`; `dark`: the
    /// dark reference; the site's scan in the standard mode has `periodUs` and `currentUA`.
    public func choose(scout: [ScanLine], scoutPeriodUs: UInt32, scoutCurrentUA: UInt32, dark: DarkReference,
                       periodUs: UInt32, currentUA: UInt32, bmi: Double?) -> Choice {
        let n = dark.means.channels
        let scale = Double(periodUs) * Double(currentUA) / max(1, Double(scoutPeriodUs) * Double(scoutCurrentUA))
        var low: [Double] = [], bright: [Double] = []
        for line in scout where line.channels == n && line.flags.contains(.xrayOn) {
            for c in (n / 4)..<(n - n / 4) {
                let l = Double(line.low(c)) - dark.means.low[c], h = Double(line.high(c)) - dark.means.high[c]
                low.append(max(l, 0) * scale)
                bright.append(max(l, h) * scale)
            }
        }
        guard !low.isEmpty else {
            let mode: ExposureMode = bmi.map { $0 >= 30 ? .thick : ($0 < 18.5 ? .thin : .standard) } ?? .standard
            return Choice(mode: mode, predictedDensestCounts: nil, predictedBrightestCounts: nil,
                          reason: bmi.map { String(format: "no scout; body mass index %.1f", $0) } ?? "no scout and no body mass index: standard")
        }
        low.sort()
        bright.sort()
        let densest = low[min(low.count - 1, Int(Double(low.count) * densestShare))]
        let brightest = bright[min(bright.count - 1, Int(Double(bright.count) * (1 - densestShare)))]
        let mode: ExposureMode
        let reason: String
        // A mode is taken only if it does not break the other limit: thick must not saturate
        // the brightest tenth, thin must not starve the densest.
        let thickFactor = ExposureMode.thick.currentFactor, thinFactor = ExposureMode.thin.currentFactor
        if densest < thickBelow && brightest * thickFactor <= thinAbove {
            mode = .thick
            reason = String(format: "the densest tenth would get %.0f photons in the standard mode (fewer than %.0f)", densest, thickBelow)
        } else if brightest > thinAbove && densest * thinFactor >= thickBelow {
            mode = .thin
            reason = String(format: "the brightest tenth would count %.0f in the standard mode (more than %.0f)", brightest, thinAbove)
        } else if densest < thickBelow || brightest > thinAbove {
            mode = .standard
            reason = String(format: "the densest tenth would get %.0f photons and the brightest tenth count %.0f: no mode keeps both in range",
                            densest, brightest)
        } else {
            mode = .standard
            reason = String(format: "the densest tenth would get %.0f photons, the brightest tenth count %.0f", densest, brightest)
        }
        return Choice(mode: mode, predictedDensestCounts: densest.rounded(), predictedBrightestCounts: brightest.rounded(), reason: reason)
    }

    /// The scout for a site: `lines` lines spread over the scan's length, each a tenth of the
    /// scan's line period (at least 10 ms) at its current: about 0.5 % of the scan's dose.
    public static func scout(of scan: ScanConfiguration, lines: UInt32 = 12) -> ScanConfiguration {
        let span = Int64(scan.lineCount) * Int64(scan.lineStepUm)
        let step = Int32(clamping: span / Int64(max(lines, 1)))
        return ScanConfiguration(scanID: 0, mode: .dual, xUm: scan.xUm, yStartUm: Int32(clamping: Int64(scan.yStartUm) + Int64(step / 2)), lineCount: lines,
                                 lineStepUm: step == 0 ? 1 : step, linePeriodUs: max(10_000, scan.linePeriodUs / 10),
                                 tubeCurrentUA: scan.tubeCurrentUA, linesPerFrame: 4)
    }
}
