import DXProtocol
import Foundation

/// Thin, standard or thick: the tube current a site's scan takes, chosen for the patient in
/// front of it so that the counts under the densest tissue stay where precision holds and the
/// thinnest tissue does not saturate (densitometers have had such modes since the fan-beam
/// generation: a thick patient is scanned slower or with more current).
public enum ExposureMode: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case thin, standard, thick

    /// The tube current as a multiple of the protocol's (standard) current: the mode's own;
    /// a scout's choice may lower thin's or raise thick's (`ExposureModeChooser.Choice`).
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
///   (docs/physics.md); thick also when the bone signal there would be noisier than
///   `boneNoiseAbove` (0.20 g/cm² a pixel), predicted from those photons with the
///   calibration's own noise per photon (`BoneNoise`): a detector that separates bone from soft
///   tissue less per photon needs more photons for the same noise, which a rule in photons
///   alone cannot see;
/// - **thin** when the brightest tenth of the body's pixels (the whole field but the air beyond
///   the body's edge) would count more than `thinAbove`
///   (55,000) in either window: within reach of the 16-bit ceiling once a channel's gain (up to
///   +8 %) and 5σ of noise are added; thin also when that leaves the densest tenth under
///   `thickBelow` (saturation loses numbers, fewer photons only add noise; the
///   body's thin edges, outside the central half of the fan, may saturate in any mode);
/// - **standard** otherwise. Without a scout (no lines), the body mass index decides: under 18.5
///   thin, 30 and over thick (WHO classes).
public struct ExposureModeChooser: Sendable {
    public var thickBelow = 150.0
    /// The most bone-signal noise (g/cm², one pixel's standard deviation) the densest tenth may
    /// have in the mode chosen. Measured (2026-12-07, docs/physics.md "Bone noise, not
    /// photons"): the ESP under lean 30 g/cm² scanned at fixed currents, ten scans each, on both
    /// physics models: the first model read L1 +1.77 ± 0.46 % at 0.245, +0.15 % at 0.200; the
    /// second model's detector +2.05 % at 0.339, +0.80 % at 0.277, −0.08 % (L2, L3 +0.4 %) at
    /// 0.214. Under about 0.20 the noise's selection stays within about half a percent on both.
    public var boneNoiseAbove = 0.20
    public var thinAbove = 55_000.0
    /// The share of central pixels that must reach `thickBelow`.
    public var densestShare = 0.1

    public init() {}

    /// What the scout said and what was chosen, to record with the scan.
    public struct Choice: Sendable, Equatable, Codable {
        public var mode: ExposureMode
        /// Predicted low-window photons at the densest tenth of the central pixels in the
        /// standard mode (the unmixed low window's, where the detector mixes its windows and the
        /// calibration says how: `Unmixing`), and the counts (either window) at the brightest
        /// tenth.
        public var predictedDensestCounts: Double?
        public var predictedBrightestCounts: Double?
        /// The densest tenth's predicted bone-signal noise in the standard mode (g/cm², one
        /// pixel's standard deviation), where the calibration says the noise per photon.
        public var predictedDensestBoneSD: Double?
        public var reason: String
        /// The tube current as a multiple of the protocol's: the mode's, or in the thin mode
        /// less when half the current would still saturate the brightest tenth (never under
        /// `ExposureModeChooser.leastThinFactor`), in the thick mode 5 or 7.5 when 2.5 would
        /// still leave the densest tenth short of photons or with too noisy a bone signal (never
        /// beyond the ICD's current).
        public var currentFactor: Double

        public enum CodingKeys: String, CodingKey {
            case mode, reason
            case predictedDensestCounts = "predicted_densest_counts", predictedBrightestCounts = "predicted_brightest_counts"
            case currentFactor = "current_factor", predictedDensestBoneSD = "predicted_densest_bone_sd_g_cm2"
        }

        public init(mode: ExposureMode, predictedDensestCounts: Double?, predictedBrightestCounts: Double?, reason: String, currentFactor: Double? = nil,
                    predictedDensestBoneSD: Double? = nil) {
            self.mode = mode; self.predictedDensestCounts = predictedDensestCounts; self.predictedBrightestCounts = predictedBrightestCounts
            self.reason = reason; self.currentFactor = currentFactor ?? mode.currentFactor
            self.predictedDensestBoneSD = predictedDensestBoneSD
        }

        /// Records written before the factor was kept carry the mode's.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let mode = try c.decode(ExposureMode.self, forKey: .mode)
            self.init(mode: mode, predictedDensestCounts: try c.decodeIfPresent(Double.self, forKey: .predictedDensestCounts),
                      predictedBrightestCounts: try c.decodeIfPresent(Double.self, forKey: .predictedBrightestCounts),
                      reason: try c.decode(String.self, forKey: .reason), currentFactor: try c.decodeIfPresent(Double.self, forKey: .currentFactor),
                      predictedDensestBoneSD: try c.decodeIfPresent(Double.self, forKey: .predictedDensestBoneSD))
        }

        /// The site scan's tube current, within the ICD's range.
        public func current(standard: UInt32) -> UInt32 {
            UInt32(min(Double(ExposureMode.maximumCurrentUA), max(1, (Double(standard) * currentFactor).rounded())))
        }
    }

    /// The thick mode's current factors: 2.5, or the next that brings the densest tenth to
    /// `thickBelow` photons and its bone noise to `boneNoiseAbove` (`choose`).
    static let thickSteps = [2.5, 5, 7.5]

    /// The thin mode lowers the current below half as far as this, when half would still
    /// saturate the brightest tenth (a thin patient's hips: the body's edge is in the field).
    public var leastThinFactor = 0.1

    /// A detector whose low window counts some of the high window's photons
    /// (`LowWindowMixing`): `fraction` of the low window's air counts, and the air's low over
    /// high counts (`Calibration.unmixing`).
    public struct Unmixing: Sendable, Equatable {
        public var fraction: Double
        public var airLowOverHigh: Double
        public init(fraction: Double, airLowOverHigh: Double) { self.fraction = fraction; self.airLowOverHigh = airLowOverHigh }

        /// The photons the unmixed low window has at a pixel of `low` and `high` counts: its
        /// signal squared over its variance. The high window's share, `fraction` ×
        /// `airLowOverHigh` × `high`, is taken out and its noise stays:
        /// (I_L − k·I_H)² / (I_L + k²·I_H), k = f·g. Behind the thickest tissue most of the low
        /// window is the high window's (three quarters behind the thickest calibration cells on
        /// the second physics model), and the counts recorded overstate the photons many times.
        public func photons(low: Double, high: Double) -> Double {
            let k = fraction * airLowOverHigh
            let own = low - k * high, variance = low + k * k * max(high, 0)
            return own > 0 && variance > 0 ? own * own / variance : 0
        }
    }

    /// A detector's bone-signal noise per photon, from its calibration's cells: at each cell
    /// κ = σ_bone·√N_L, one pixel's bone standard deviation times the square root of its low
    /// window's photons (the unmixed window's where the windows mix), from the fitted bone
    /// model's derivatives and the cell's variances and covariance of (L_low, L_high)
    /// (`Calibration.boneNoise`; the cell's pixel count cancels).
    /// It grows with the tissue (over the phantom's bone cells: the first physics model 2.0 to
    /// 3.0, the second model's detector 3.6 to 6.6). The scout's densest tenth takes the κ of
    /// the cells that pass as many photons per ms·mA as it does, continued along the cells' own
    /// trend beyond the densest (`kappa(photonsPerMsMA:)`): a patient denser than the phantom is
    /// noisier per photon.
    public struct BoneNoise: Sendable, Equatable {
        /// Per cell: the low window's photons one pixel gets per ms·mA of exposure, and κ.
        public var cells: [(photonsPerMsMA: Double, kappa: Double)]

        public init(cells: [(photonsPerMsMA: Double, kappa: Double)]) { self.cells = cells }

        public static func == (a: BoneNoise, b: BoneNoise) -> Bool {
            a.cells.count == b.cells.count && zip(a.cells, b.cells).allSatisfy { $0.photonsPerMsMA == $1.photonsPerMsMA && $0.kappa == $1.kappa }
        }

        /// κ where a pixel gets `photonsPerMsMA`: the cells weighted by how near their
        /// transmission is (a Gaussian in the logarithm, half a factor of two wide). Beyond the
        /// densest cell, that value continued by the least-squares slope of κ against the
        /// logarithm over all cells where κ rises as the transmission falls; beyond the thinnest,
        /// the nearest cells decide (κ falls that way: the prediction errs high). Nil without
        /// cells.
        public func kappa(photonsPerMsMA: Double) -> Double? {
            guard !cells.isEmpty, photonsPerMsMA > 0, photonsPerMsMA.isFinite else { return cells.map(\.kappa).max() }
            let logs = cells.map { log($0.photonsPerMsMA) }
            if let least = logs.min(), log(photonsPerMsMA) < least, let at = interpolated(least) {
                let n = Double(cells.count), mx = logs.reduce(0, +) / n, my = cells.reduce(0) { $0 + $1.kappa } / n
                let sxx = logs.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }
                let sxy = zip(logs, cells).reduce(0) { $0 + ($1.0 - mx) * ($1.1.kappa - my) }
                let slope = sxx > 0 ? sxy / sxx : 0
                return slope < 0 ? at + slope * (log(photonsPerMsMA) - least) : at
            }
            return interpolated(log(photonsPerMsMA))
        }

        private func interpolated(_ target: Double) -> Double? {
            let nearest = cells.map { abs(log($0.photonsPerMsMA) - target) }.min() ?? 0
            let width = 0.5 * log(2.0)
            var sum = 0.0, total = 0.0
            for c in cells {
                let d = abs(log(c.photonsPerMsMA) - target) - nearest
                let w = exp(-0.5 * d * d / (width * width))
                sum += w * c.kappa; total += w
            }
            return total > 0 ? sum / total : nil
        }

        /// One pixel's predicted bone standard deviation (g/cm²) with `photons` in the low
        /// window at an exposure of `msMA` per pixel.
        public func boneSD(photons: Double, msMA: Double) -> Double? {
            guard photons > 0, msMA > 0, let k = kappa(photonsPerMsMA: photons / msMA) else { return nil }
            return k / photons.squareRoot()
        }
    }

    /// `scout`: the scout's lines, taken with `scoutPeriodUs` and `scoutCurrentUA`; `dark`: the
    /// dark reference; the site's scan in the standard mode has `periodUs` and `currentUA`.
    /// `unmixing`: the detector's low window mixing (the calibration's), so that the densest
    /// tenth is judged by the photons the unmixed low window has, not by the counts recorded.
    /// `boneNoise`: the calibration's noise per photon (`Calibration.boneNoise`), so that the
    /// densest tenth's bone noise is judged as well as its photons.
    public func choose(scout: [ScanLine], scoutPeriodUs: UInt32, scoutCurrentUA: UInt32, dark: DarkReference,
                       periodUs: UInt32, currentUA: UInt32, bmi: Double?, unmixing: Unmixing? = nil, boneNoise: BoneNoise? = nil) -> Choice {
        let n = dark.means.channels
        let scale = Double(periodUs) * Double(currentUA) / max(1, Double(scoutPeriodUs) * Double(scoutCurrentUA))
        var low: [Double] = [], high: [Double] = [], bright: [Double] = []
        for line in scout where line.channels == n && line.flags.contains(.xrayOn) {
            for c in (n / 4)..<(n - n / 4) {
                low.append(max(Double(line.low(c)) - dark.means.low[c], 0) * scale)
                if unmixing != nil { high.append(max(Double(line.high(c)) - dark.means.high[c], 0) * scale) }
            }
            // The brightest tissue over the whole field, the air beyond the body's edge left
            // out: a hip's thinnest tissue lies beside the trochanter near the edge, and the
            // soft tissue next to bone is the reference the decomposition needs.
            let counts = (0..<n).map { c in max(Double(line.low(c)) - dark.means.low[c], Double(line.high(c)) - dark.means.high[c]) }
            let body = Self.bodyChannels(counts)
            for c in body { bright.append(counts[c] * scale) }
        }
        guard !low.isEmpty, !bright.isEmpty else {
            let mode: ExposureMode = bmi.map { $0 >= 30 ? .thick : ($0 < 18.5 ? .thin : .standard) } ?? .standard
            return Choice(mode: mode, predictedDensestCounts: nil, predictedBrightestCounts: nil,
                          reason: bmi.map { String(format: "no scout; body mass index %.1f", $0) } ?? "no scout and no body mass index: standard")
        }
        low.sort()
        high.sort()
        bright.sort()
        // The densest tenth's counts in each window (the same pixels: the densest are the
        // dimmest in both), and then, where the windows mix, the unmixed low window's photons
        // from them: a tenth's quantile of photons computed pixel by pixel from the scout's few
        // counts would fall far under the truth (a squared quantity of signal-to-noise 3).
        let tenth = min(low.count - 1, Int(Double(low.count) * densestShare))
        let densest = unmixing.map { u in high.count == low.count ? u.photons(low: low[tenth], high: high[tenth]) : low[tenth] } ?? low[tenth]
        let brightest = bright[min(bright.count - 1, Int(Double(bright.count) * (1 - densestShare)))]
        // The densest tenth's bone noise in the standard mode, and what a current factor makes
        // of it (σ falls as the square root of the photons).
        let msMA = Double(periodUs) / 1000 * Double(currentUA) / 1000
        let boneSD = boneNoise?.boneSD(photons: densest, msMA: msMA)
        // What the densest tenth lacks at a current factor, in words (nil: nothing): the
        // photons, the bone noise, or both.
        func shortfall(_ factor: Double) -> String? {
            let photons = densest * factor, sd = boneSD.map { $0 / factor.squareRoot() }
            let few = photons < thickBelow, noisy = sd.map { $0 > boneNoiseAbove } ?? false
            let window = unmixing == nil ? "" : " in its unmixed low window"
            switch (few, noisy) {
            case (false, false): return nil
            case (true, false): return String(format: "%.0f photons (fewer than %.0f)%@", photons, thickBelow, window)
            case (false, true): return String(format: "a bone noise of %.2f g/cm² a pixel (more than %.2f) from its %.0f photons%@", sd ?? 0, boneNoiseAbove, photons, window)
            case (true, true): return String(format: "%.0f photons (fewer than %.0f)%@ and a bone noise of %.2f g/cm² a pixel (more than %.2f)",
                                             photons, thickBelow, window, sd ?? 0, boneNoiseAbove)
            }
        }
        let mode: ExposureMode
        var reason: String
        // A mode is taken only if it does not break the other limit: thick must not saturate
        // the brightest tenth, thin must not starve the densest.
        let thickFactor = ExposureMode.thick.currentFactor, thinFactor = ExposureMode.thin.currentFactor
        // Thin: half the current, or less where half would still reach `thinAbove`.
        let thinCurrent = max(leastThinFactor, min(thinFactor, thinAbove / max(brightest, 1)))
        if let lack = shortfall(1), brightest * thickFactor <= thinAbove {
            mode = .thick
            reason = "the densest tenth would get " + lack + " in the standard mode"
        } else if brightest > thinAbove {
            // Saturation loses a pixel's number and the soft-tissue reference beside bone with it;
            // fewer photons only add noise (counted, and corrected below 25). So thin, even when
            // it leaves the densest tenth short, and the record says so.
            mode = .thin
            reason = String(format: "the brightest tenth would count %.0f in the standard mode (more than %.0f)", brightest, thinAbove)
            // Judged at the current the thin mode takes.
            if let lack = shortfall(thinCurrent) {
                reason += ", and the densest tenth gets " + lack + " in the thin mode: no mode keeps both in range, and saturation would lose numbers where fewer photons only add noise"
            }
        } else {
            mode = .standard
            reason = String(format: "the densest tenth would get %.0f photons, the brightest tenth count %.0f", densest, brightest)
                + (unmixing == nil ? "" : " (the densest tenth's photons in its unmixed low window)")
                + (boneSD.map { String(format: "; its bone noise %.2f g/cm² a pixel", $0) } ?? "")
            if let lack = shortfall(1) {
                reason += String(format: "; the densest tenth gets %@, but the thick mode would bring the brightest tenth over %.0f", lack, thinAbove)
            }
        }
        // Thin: half the current, or less if half would still reach `thinAbove`. Thick: 2.5
        // times, or 5 or 7.5 where 2.5 would still leave the densest tenth short of photons or
        // with too noisy a bone signal (a patient of 34 g/cm² got 62 photons there at 2.5 times
        // and read L1–L4 +6.1 %, +1.0 % at 7.5 times; docs/physics.md): steps, not a continuous
        // factor, so that the scout's few counts (it takes a tenth of the period) do not give
        // the same patient another current at every visit. Never beyond the ICD's highest
        // current or what would bring the brightest tenth to `thinAbove`; where the steps end
        // short, the reason says what is still lacking.
        var factor: Double
        var limit = ""
        switch mode {
        case .thin: factor = thinCurrent
        case .standard: factor = 1
        case .thick:
            let icd = Double(ExposureMode.maximumCurrentUA) / Double(max(currentUA, 1)), bright = thinAbove / max(brightest, 1)
            // A protocol current over 1.2 mA leaves the ICD's 3 mA under 2.5 times.
            factor = min(thickFactor, icd)
            if icd < thickFactor { limit = " (the ICD's 3 mA allows no more)" }
            for step in Self.thickSteps where factor < step && icd >= thickFactor && shortfall(factor) != nil {
                guard step <= min(icd, bright) else {
                    limit = step > icd ? " (the ICD's 3 mA allows no more)" : String(format: " (the brightest tenth would reach %.0f)", thinAbove)
                    break
                }
                factor = step
            }
            factor = min(factor, icd)
            if let lack = shortfall(factor) { limit += "; still " + lack + " at that current" }
        }
        let scaled = (mode == .thin && factor < thinFactor) || (mode == .thick && factor != thickFactor)
        if scaled { reason += String(format: "; current ×%.2f", factor) + limit } else if !limit.isEmpty { reason += limit }
        return Choice(mode: mode, predictedDensestCounts: densest.rounded(), predictedBrightestCounts: brightest.rounded(),
                      reason: reason, currentFactor: factor, predictedDensestBoneSD: boneSD.map { ($0 * 1000).rounded() / 1000 })
    }

    /// The channels of a line that see the body: all but a plateau at either field edge (air
    /// beyond the body's edge, which saturates in any mode and is normal). A side's plateau is
    /// the run of channels from its edge that stay within `airPlateau` of the run's mean,
    /// started from the median of its first three channels (two neighbours' gains can differ
    /// by 16 %, and the edge channel may be dim or dead: such a first channel is passed over
    /// and counted with the air; a dead second or third channel ends the plateau, and that
    /// side's air counts as body), at least 3 channels wide and at least `airShare` of the line's
    /// highest count. The heel effect leaves one side's air a third under the other's (the
    /// second physics model: 42,000 against 64,000), and a plateau taken against the line's
    /// maximum counted that side's air as body, so that a phantom of 36 g/cm² was refused the
    /// thick mode for fear of saturating it (docs/physics.md). Tissue at the body's very edge
    /// that passes more than half the air and falls off slowly is taken for air too (it may
    /// saturate in any mode); an air reference per channel would tell them apart, which the
    /// scout does not take.
    static func bodyChannels(_ counts: [Double], airPlateau: Double = 0.15, airShare: Double = 0.5) -> Range<Int> {
        guard let top = counts.max(), top > 0 else { return 0..<counts.count }
        func plateau(_ channels: [Int]) -> Int {
            guard channels.count >= 3 else { return 0 }
            let anchor = channels.prefix(3).map { counts[$0] }.sorted()[1]
            var sum = anchor, k = 1, length = 0
            for (i, c) in channels.enumerated() {
                let mean = sum / Double(k)
                if abs(counts[c] - mean) <= airPlateau * mean {
                    sum += counts[c]; k += 1; length = i + 1
                } else if i > 0 {
                    break
                }
            }
            return length >= 3 && (sum - anchor) / Double(k - 1) >= airShare * top ? length : 0
        }
        var lo = plateau(Array(counts.indices)), hi = counts.count - plateau(counts.indices.reversed())
        // A line level throughout shows no edge: all body (or all air, which the scout's other
        // lines and the densest tenth will tell).
        if lo >= hi { return 0..<counts.count }
        // A few channels into the body, its very edge (a partial channel) left out.
        let margin = 2
        if lo > 0 { lo = min(hi, lo + margin) }
        if hi < counts.count { hi = max(lo, hi - margin) }
        return lo..<hi
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
