import DXProtocol
import Foundation

/// Mean log attenuations over one calibration cell, with the cell's known composition.
public struct CalibrationPoint: Sendable, Equatable, Codable {
    public var lLow: Double
    public var lHigh: Double
    /// The soft-tissue ratio L_low/L_high of the same lean and fat without bone, measured
    /// in the same scan.
    public var softRatio: Double
    public var hydroxyapatite: Double
    public var lean: Double
    public var fat: Double
    public var pixels: Int
    /// The exposure behind the measurement: Σ over its pixels of line period × tube current
    /// (ms·mA). Cells may be measured in several scans of different exposure.
    public var exposure: Double
    /// Photon noise of `lLow` and `lHigh` (variance), from the counts behind them; 0 in
    /// calibrations made before it was recorded.
    public var varianceLow: Double = 0
    public var varianceHigh: Double = 0

    public enum CodingKeys: String, CodingKey {
        case lLow, lHigh, softRatio, hydroxyapatite, lean, fat, pixels, exposure, varianceLow, varianceHigh
    }

    public init(lLow: Double, lHigh: Double, softRatio: Double, hydroxyapatite: Double, lean: Double, fat: Double,
                pixels: Int, exposure: Double, varianceLow: Double = 0, varianceHigh: Double = 0) {
        self.lLow = lLow; self.lHigh = lHigh; self.softRatio = softRatio
        self.hydroxyapatite = hydroxyapatite; self.lean = lean; self.fat = fat
        self.pixels = pixels; self.exposure = exposure; self.varianceLow = varianceLow; self.varianceHigh = varianceHigh
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lLow = try c.decode(Double.self, forKey: .lLow)
        lHigh = try c.decode(Double.self, forKey: .lHigh)
        softRatio = try c.decode(Double.self, forKey: .softRatio)
        hydroxyapatite = try c.decode(Double.self, forKey: .hydroxyapatite)
        lean = try c.decode(Double.self, forKey: .lean)
        fat = try c.decode(Double.self, forKey: .fat)
        pixels = try c.decode(Int.self, forKey: .pixels)
        exposure = try c.decode(Double.self, forKey: .exposure)
        varianceLow = try c.decodeIfPresent(Double.self, forKey: .varianceLow) ?? 0
        varianceHigh = try c.decodeIfPresent(Double.self, forKey: .varianceHigh) ?? 0
    }
}

/// A least-squares fit of one quantity as a linear combination of fixed terms, with the
/// terms standardised for conditioning.
public struct LinearModel: Sendable, Equatable, Codable {
    public var coefficients: [Double]
    public var means: [Double]
    public var scales: [Double]

    /// `centred`: term 0 is a constant and the others are centred and scaled; otherwise every
    /// term is only scaled, so a model whose terms all vanish at a point is exactly 0 there.
    public static func fit(_ rows: [[Double]], _ targets: [Double], weights: [Double]? = nil,
                           centred: Bool = true) throws(DecompositionError) -> LinearModel {
        guard let width = rows.first?.count, rows.count >= width else {
            throw .tooFewCalibrationPoints(rows.count, needed: rows.first?.count ?? 1)
        }
        var means = [Double](repeating: 0, count: width), scales = [Double](repeating: 1, count: width)
        for j in (centred ? 1 : 0)..<width {
            let col = rows.map { $0[j] }
            let m = centred ? col.reduce(0, +) / Double(col.count) : 0
            let sd = (col.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(col.count)).squareRoot()
            means[j] = m
            scales[j] = sd > 1e-12 ? sd : 1
        }
        let x = rows.map { r in (0..<width).map { j in (r[j] - means[j]) / scales[j] } }
        // Normal equations, solved by Gaussian elimination with partial pivoting.
        var a = [[Double]](repeating: [Double](repeating: 0, count: width + 1), count: width)
        for (k, (r, t)) in zip(x, targets).enumerated() {
            let w = weights?[k] ?? 1
            for i in 0..<width {
                for j in 0..<width { a[i][j] += w * r[i] * r[j] }
                a[i][width] += w * r[i] * t
            }
        }
        for i in 0..<width { a[i][i] += 1e-12 }
        for col in 0..<width {
            guard let pivot = (col..<width).max(by: { abs(a[$0][col]) < abs(a[$1][col]) }), abs(a[pivot][col]) > 1e-14 else {
                throw .singularFit("term \(col) is not determined by the calibration cells")
            }
            a.swapAt(col, pivot)
            for r in 0..<width where r != col {
                let f = a[r][col] / a[col][col]
                if f != 0 { for k in col...width { a[r][k] -= f * a[col][k] } }
            }
        }
        let coefficients = (0..<width).map { a[$0][width] / a[$0][$0] }
        return LinearModel(coefficients: coefficients, means: means, scales: scales)
    }

    /// The same model with the standardisation folded into the coefficients: evaluate as
    /// Σ rawCoefficients[j] · term[j], with no array per pixel.
    public var rawCoefficients: [Double] {
        var raw = coefficients.indices.map { j in coefficients[j] / scales[j] }
        for j in 1..<coefficients.count { raw[0] -= coefficients[j] * means[j] / scales[j] }
        return raw
    }

    public func evaluate(_ terms: [Double]) -> Double {
        var s = 0.0
        for j in 0..<coefficients.count { s += coefficients[j] * (terms[j] - means[j]) / scales[j] }
        return s
    }
}

/// The calibration: how the two attenuations and the surrounding soft tissue's ratio map to
/// bone mineral and soft-tissue mass, fitted from a calibration-phantom scan. Versioned,
/// and it names the capture it came from (`source`).
public struct Calibration: Sendable, Equatable, Codable {
    /// 3: each channel's spectral response (`channelResponse`) is part of the calibration.
    /// 4: the unit it was measured on (`unit`), so that no other unit's calibration is used.
    /// 5: the low window's unmixing (`lowWindowMixing`), and every channel measured (the
    /// passes step by 10/9 of a cell since 2026-12-06; a version 4 calibration left 54 of 144
    /// channels at a response of 1 unseen, and is refused: recalibrate).
    /// 6: each channel's low-window cross term (`ChannelResponse.lowCross`), which a reader of
    /// version 5 would drop while keeping the scales fitted with it.
    /// 7: each channel's low-window square (`ChannelResponse.lowSquare`), the same for a reader
    /// of version 6.
    public static let formatVersion = 7
    /// The formats this software reads: 7, and 6, whose maps have no square (read as squares of
    /// 0, which is what it was fitted with; a format 6 file that carries squares is not well
    /// formed). Older formats are refused: recalibrate. A calibration is written in the oldest
    /// of these that holds it (6 without squares: `fit`), so that the software before this
    /// one still reads a unit's calibration that has nothing it does not know.
    public static let readableVersions = 6...formatVersion

    /// The channels' maps in words, for the outputs that report a calibration.
    public var channelMap: String {
        guard let r = channelResponse else { return "none" }
        return r.lowSquare != nil ? "scale, cross term and square" : r.lowCross != nil ? "scale and cross term" : "scale"
    }
    public var version = Calibration.formatVersion
    public var source: String
    public var created: String
    public var hydroxyapatite: LinearModel
    public var softTissue: LinearModel
    public var fatFraction: LinearModel
    public var points: [CalibrationPoint]
    /// Root-mean-square residuals over the calibration cells (g/cm², g/cm², fraction).
    public var residualHydroxyapatite: Double
    public var residualSoftTissue: Double
    public var residualFatFraction: Double
    /// Each channel's attenuation scale onto the detector's mean response (nil: all 1).
    public var channelResponse: ChannelResponse?
    /// The unit whose tube and detector were measured (GET_INFO's model and serial, from the
    /// calibration capture's header). A calibration holds for that unit only: two DX-1s differ
    /// in spectrum, filtration and channel gains by more than the bone signal of a percent.
    public var unit: CalibratedUnit?
    /// The detector's dead time (µs), measured from the calibration's air scans at two tube
    /// currents (`CountRate`); every scan decomposed with this calibration has its rate loss
    /// undone. Nil (a calibration without a second air scan): no correction, as it was fitted.
    public var deadTimeUs: Double?
    /// The scatter in the fan, measured beside the calibration phantom (`ScatterModel`); nil
    /// when none could be told from noise: no correction.
    public var scatter: ScatterModel?
    /// Channels at the fan's ends that saw no calibration cell's interior (the phantom is
    /// narrower than the fan), whose response is their nearest measured neighbours'
    /// (`CalibrationMeasurement.Result.unmeasured`); nil or empty: every channel measured.
    public var inferredChannels: [Int]?
    /// The fraction of the low window's air counts that are high-energy photons (K-escape,
    /// charge sharing, the window edges' blur), measured on the calibration cells
    /// (`LowWindowMixing`) and taken out of every pixel's low window before its logarithm;
    /// nil or 0: none found.
    public var lowWindowMixing: Double?
    /// With `lowWindowMixing`: the air's low-window counts over its high-window counts (the
    /// median over the central half of the fan, from the calibration's air reference), so that a scout can say
    /// how many of a pixel's low-window counts are the high window's photons and how many photons
    /// the unmixed low window really has (`ExposureModeChooser`). Nil without mixing (and in
    /// calibrations made before it was kept: the scout then counts photons as they were recorded).
    public var lowWindowAirRatio: Double?
    /// Each window's effective spectrum, fitted to the cells (`EffectiveSpectra`): the models
    /// were fitted beyond the phantom's cells to the cells it continues there, unless
    /// `extensionSetAside` says otherwise. Nil in calibrations made before it (fitted to the
    /// cells alone) or where the cells did not give one.
    public var spectra: EffectiveSpectra?
    /// Set where the models are the phantom's cells' alone although the spectra were found: the
    /// bone residual (g/cm²) the models continued by the spectra had over the cells, which
    /// failed the one rule where the cells alone pass it (`fit`). Nil where the models were
    /// continued, or no spectra were found.
    public var extensionSetAside: Double?

    /// The soft tissue (lean and fat, g/cm²) of the calibration's thickest cell: the models
    /// are fitted up to it and extrapolated beyond (ICD §8: at least 25 + 6). Nil without cells.
    public var thickestSoftTissueGCm2: Double? {
        points.map { $0.lean + $0.fat }.filter(\.isFinite).max()
    }

    /// What a scout needs to count the unmixed low window's photons; nil where the windows do
    /// not mix or the calibration does not say how.
    public var unmixing: ExposureModeChooser.Unmixing? {
        guard let f = lowWindowMixing, f > 0, f < 1, let g = lowWindowAirRatio, g.isFinite, g > 0 else { return nil }
        return ExposureModeChooser.Unmixing(fraction: f, airLowOverHigh: g)
    }

    /// What a scout needs to predict the bone signal's noise from photons: κ at each of the
    /// phantom's bone cells (`ExposureModeChooser.BoneNoise`), from the fitted bone model's
    /// derivatives and the cells' own variances. Nil for a calibration made before the cells'
    /// variances were kept, one without bone cells, and one whose windows mix without the air
    /// ratio the scout needs to count the unmixed photons (format 6 files made before
    /// `lowWindowAirRatio` was kept): its scout counts the recorded counts, up to four times the
    /// unmixed photons behind thick tissue, against which a κ per unmixed photon would predict
    /// half the noise.
    ///
    /// κ² = (∂B/∂u)² + (∂B/∂v)²·var v/var u + 2·(∂B/∂u)(∂B/∂v)·cov(u, v)/var u, with u, v the
    /// low and high attenuations. Where the low window is unmixed (`LowWindowMixing`), its
    /// estimate I_L' = I_L − k·I_H (k = f·g, `unmixing`) shares the high window's noise:
    /// cov(u, v) = −k/I_L' and var u = (I_L' + k(1 + k)·I_H)/I_L'², so with N = 1/var u and
    /// I_H = 1/var v a pixel, I_L' = (N + √(N² + 4N·k(1 + k)·I_H))/2 and cov/var u = −k·N/I_L'.
    /// With ∂B/∂u > 0 > ∂B/∂v the term raises κ (5 % at the second physics model's densest
    /// cell, 6.28 → 6.61). The variance of the soft-tissue ratio R is left out: R comes from the
    /// tissue averaged beside the bone, an error shared by an ROI's pixels rather than each
    /// pixel's noise. A cell's variances also carry the channel maps' and the scatter
    /// correction's share, which scale var u and var v alike and leave κ as it is; they make
    /// the cell's photons (1/var u a pixel) a little lower than the scout's, which moves only
    /// the cell a scout's transmission is compared with.
    public var boneNoise: ExposureModeChooser.BoneNoise? {
        guard isWellFormed else { return nil }
        if let f = lowWindowMixing, f > 0, unmixing == nil { return nil }
        let k = unmixing.map { $0.fraction * $0.airLowOverHigh } ?? 0
        let model = fastBoneModel
        let cells: [(photonsPerMsMA: Double, kappa: Double)] = points.compactMap { p in
            guard p.hydroxyapatite > 0, p.varianceLow > 0, p.varianceHigh > 0, p.pixels > 0, p.exposure > 0 else { return nil }
            let (dU, dV, _) = model.slopes(p.lLow, p.lHigh, p.softRatio)
            // One pixel's photons (the cell's mean has the variance of one pixel over its count)
            // over one pixel's exposure, and its high window's counts.
            let photons = 1 / (p.varianceLow * Double(p.pixels)), high = 1 / (p.varianceHigh * Double(p.pixels))
            let msMA = p.exposure / Double(p.pixels)
            var covOverVarU = 0.0
            if k > 0 {
                let own = (photons + (photons * photons + 4 * photons * k * (1 + k) * high).squareRoot()) / 2
                if own > 0 { covOverVarU = -k * photons / own }
            }
            let kappa = max(0, dU * dU + dV * dV * p.varianceHigh / p.varianceLow + 2 * dU * dV * covOverVarU).squareRoot()
            guard kappa.isFinite, kappa > 0, photons.isFinite, msMA.isFinite else { return nil }
            return (photons / msMA, kappa)
        }
        return cells.isEmpty ? nil : ExposureModeChooser.BoneNoise(cells: cells)
    }

    public init(source: String, created: String, hydroxyapatite: LinearModel, softTissue: LinearModel, fatFraction: LinearModel,
                points: [CalibrationPoint], residualHydroxyapatite: Double, residualSoftTissue: Double, residualFatFraction: Double,
                channelResponse: ChannelResponse? = nil, unit: CalibratedUnit? = nil) {
        self.source = source; self.created = created
        self.hydroxyapatite = hydroxyapatite; self.softTissue = softTissue; self.fatFraction = fatFraction
        self.points = points
        self.residualHydroxyapatite = residualHydroxyapatite; self.residualSoftTissue = residualSoftTissue
        self.residualFatFraction = residualFatFraction
        self.channelResponse = channelResponse
        self.unit = unit
    }

    /// Why this calibration must not measure on `device`, or nil when it was made on it.
    public func unitProblem(for device: DeviceInfo) -> String? {
        guard let unit else { return "the calibration \(source) does not say which unit it was made on" }
        guard unit.matches(device) else {
            return "the calibration \(source) was made on \(unit), this is \(CalibratedUnit(device))"
        }
        return nil
    }

    /// Terms of the bone model. Monoenergetically BMD = (L_low − R·L_high)/(μ_b,low − R·μ_b,high):
    /// the "bone signal" b₀ = L_low − R·L_high over a factor that depends on R. The beam's
    /// hardening makes the factor depend on b₀ and L_high too, so BMD = b₀·P(b₀, L_high, R) with
    /// P a low-order polynomial. Every term carries b₀, so soft tissue whose ratio is R reads
    /// exactly 0 whatever its thickness.
    static func boneTerms(_ u: Double, _ v: Double, _ r: Double) -> [Double] {
        let b = u - r * v
        return [b, b * r, b * r * r, b * v, b * v * r, b * v * v, b * b, b * b * r, b * b * v, b * b * b, b * v * r * r, b * v * v * r,
                b * r * r * r, b * v * v * v, b * b * r * r, b * b * v * r]
    }

    /// How many terms the bone model has: 16, or the first 12 where the cells do not need more.
    public static let boneTermCount = 16
    public static let boneTermCountReduced = 12

    /// The 99 % point of F(d1, d2) (Wilson–Hilferty cube-root approximation of the F
    /// distribution, Abramowitz & Stegun 26.6.16); 3.66 for (4, 59), the exact value 3.655.
    static func fQuantile99(_ d1: Int, _ d2: Int) -> Double {
        guard d1 > 0, d2 > 0 else { return .infinity }
        let a = 2 / (9 * Double(d1)), b = 2 / (9 * Double(d2)), z = 2.326_348
        // Solve ((1 − b)·w − (1 − a)) / √(b·w² + a) = z for w = F^(1/3).
        let p = (1 - b) * (1 - b) - z * z * b, q = -2 * (1 - a) * (1 - b), r = (1 - a) * (1 - a) - z * z * a
        let disc = q * q - 4 * p * r
        guard p > 0, disc >= 0 else { return .infinity }
        let w = (-q + disc.squareRoot()) / (2 * p)
        return w * w * w
    }

    /// Terms of the soft-tissue model: linear in the attenuations with coefficients that
    /// depend on R, and their squares for the hardening.
    static func softTerms(_ u: Double, _ v: Double, _ r: Double) -> [Double] {
        let ur = u * r, vr = v * r, uu = u * u, vv = v * v, uv = u * v
        return [1, r, u, ur, ur * r, v, vr, vr * r, uu, vv, uv, uu * r, vv * r, uv * r]
    }

    static func fatTerms(_ r: Double, _ v: Double) -> [Double] { [1, r, v, r * r, r * v, v * v] }

    /// Fits from a phantom's measurement: the cells, and each channel's response.
    public static func fit(_ measurement: CalibrationMeasurement.Result, source: String,
                           unit: CalibratedUnit? = nil, deadTimeUs: Double? = nil) throws(DecompositionError) -> Calibration {
        func completed(_ fitted: Calibration) -> Calibration {
            var c = fitted
            c.channelResponse = measurement.response
            c.inferredChannels = measurement.unmeasured.isEmpty ? nil : measurement.unmeasured
            c.lowWindowMixing = measurement.lowWindowMixing == 0 ? nil : measurement.lowWindowMixing
            c.unit = unit
            c.deadTimeUs = deadTimeUs
            c.version = c.channelResponse?.lowSquare == nil ? readableVersions.lowerBound : formatVersion
            return c
        }
        // The models continued beyond the phantom by its spectra, unless that fails the one
        // rule on the phantom's own cells where the cells alone pass it: the continuation may
        // not cost a unit its calibration (cells the spectra do not describe, such as those of
        // an archived capture whose channels were partly inferred, or scatter not all taken off).
        let alone = { () throws(DecompositionError) -> Calibration in completed(try fit(points: measurement.points, source: source, extending: false)) }
        guard let extended = (try? fit(points: measurement.points, source: source)).map(completed) else { return try alone() }
        guard extended.spectra != nil, extended.verdict.residual > extended.verdict.limit else { return extended }
        var cellsAlone = try alone()
        guard cellsAlone.verdict.accepted else { return extended }
        cellsAlone.spectra = extended.spectra
        cellsAlone.extensionSetAside = extended.verdict.residual
        return cellsAlone
    }

    /// Fits from measured cells. The cells must span the ICD's ranges.
    /// `extending`: fit the models beyond the phantom's cells to its effective spectra too
    /// (where the cells give spectra: `EffectiveSpectra`).
    public static func fit(points: [CalibrationPoint], source: String, extending: Bool = true) throws(DecompositionError) -> Calibration {
        let usable = points.filter { $0.pixels >= 10 && $0.lLow.isFinite && $0.lHigh.isFinite && $0.softRatio.isFinite }
        let needed = 20
        guard usable.count >= needed else { throw .tooFewCalibrationPoints(usable.count, needed: needed) }
        let measuredBone = usable.map(\.hydroxyapatite), lean = usable.map(\.lean), fat = usable.map(\.fat)
        guard (measuredBone.min() ?? 1) <= 0.05, (measuredBone.max() ?? 0) >= 1.95 else { throw .calibrationRangeMissing("hydroxyapatite 0 to 2.0 g/cm²") }
        guard (lean.min() ?? 99) <= 5.5, (lean.max() ?? 0) >= 24.5 else { throw .calibrationRangeMissing("lean 5 to 25 g/cm²") }
        guard (fat.min() ?? 99) <= 0.05, (fat.max() ?? 0) >= 5.95 else { throw .calibrationRangeMissing("fat 0 to 6 g/cm²") }

        // The phantom's cells, and beyond their span the cells the effective spectra predict
        // (`EffectiveSpectra`, `extending`): the models are fitted to both, judged on the
        // phantom's alone.
        let spectra = EffectiveSpectra.fit(points: usable)
        let none: (cells: [CalibrationPoint], shares: [Double]) = ([], [])
        let continued = extending ? spectra.map { Self.extending(usable, by: $0) } ?? none : none
        let cells = usable + continued.cells
        // The fat model was fitted unweighted over the phantom's bone-free cells; a continued cell
        // counts for its share of the cell it continues.
        let fatWeights = [Double](repeating: 1, count: usable.count) + continued.shares
        let ha = cells.map(\.hydroxyapatite)
        let boneRows = cells.map { boneTerms($0.lLow, $0.lHigh, $0.softRatio) }
        // Weight each cell by the photons behind its measurement (exposure × low-window
        // transmission): photon-starved thick cells must not pull the fit where data is good.
        let weights = cells.map { $0.exposure * Foundation.exp(-$0.lLow) }
        let softRows = cells.map { softTerms($0.lLow, $0.lHigh, $0.softRatio) }
        // The bone model's last four terms only where the cells need them: an F test of the
        // weighted residuals with and without them at 99 % (F(4, 59) ≈ 3.66 for 75 cells);
        // terms the data do not ask for only carry the cells' noise to the patient.
        let reduced = boneRows.map { Array($0.prefix(Calibration.boneTermCountReduced)) }
        let small = try LinearModel.fit(reduced, ha, weights: weights, centred: false)
        // A phantom whose cells do not determine the four extra terms keeps the twelve.
        let full = (try? LinearModel.fit(boneRows, ha, weights: weights, centred: false)) ?? small
        func rss(_ m: LinearModel, _ rows: [[Double]]) -> Double {
            zip(zip(rows, ha), weights).reduce(0) { s, x in let d = m.evaluate(x.0.0) - x.0.1; return s + x.1 * d * d }
        }
        let extra = Double(Calibration.boneTermCount - Calibration.boneTermCountReduced)
        let dof = Double(usable.count - Calibration.boneTermCount)
        let fullRows = full.coefficients.count == Calibration.boneTermCount ? boneRows : reduced
        let f = dof > 0 && fullRows.first?.count == Calibration.boneTermCount
            ? ((rss(small, reduced) - rss(full, fullRows)) / extra) / (rss(full, fullRows) / dof) : 0
        // Continued cells span more than the phantom's and carry no noise of their own: there the
        // full model is taken (the F test's distribution is the measured cells').
        let useFull = !continued.cells.isEmpty || f > fQuantile99(Int(extra), Int(dof))
        let haModel = useFull ? full : small
        let softModel = try LinearModel.fit(softRows, cells.map { $0.lean + $0.fat }, weights: weights)
        let softOnly = cells.indices.filter { cells[$0].hydroxyapatite == 0 }
        let fatRows = softOnly.map { fatTerms(cells[$0].lLow / cells[$0].lHigh, cells[$0].lHigh) }
        let fatModel = try LinearModel.fit(fatRows, softOnly.map { cells[$0].fat / max(cells[$0].lean + cells[$0].fat, 1e-9) },
                                           weights: softOnly.map { fatWeights[$0] })

        // Residuals over the phantom's cells only: what was measured.
        func rms(_ values: [(model: Double, truth: Double)]) -> Double {
            (values.map { ($0.model - $0.truth) * ($0.model - $0.truth) }.reduce(0, +) / Double(max(values.count, 1))).squareRoot()
        }
        let measuredSoft = usable.filter { $0.hydroxyapatite == 0 }
        var calibration = Calibration(
            source: source, created: Date().formatted(.iso8601), hydroxyapatite: haModel, softTissue: softModel, fatFraction: fatModel,
            points: usable,
            residualHydroxyapatite: rms(usable.map { let t = boneTerms($0.lLow, $0.lHigh, $0.softRatio); return (haModel.evaluate(useFull ? t : Array(t.prefix(boneTermCountReduced))), $0.hydroxyapatite) }),
            residualSoftTissue: rms(usable.map { (softModel.evaluate(softTerms($0.lLow, $0.lHigh, $0.softRatio)), $0.lean + $0.fat) }),
            residualFatFraction: rms(measuredSoft.map { (fatModel.evaluate(fatTerms($0.lLow / $0.lHigh, $0.lHigh)), $0.fat / max($0.lean + $0.fat, 1e-9)) }))
        // The spectra are kept where they continued the models (`fit(_:)` keeps them with
        // `extensionSetAside` where it set the continuation aside).
        calibration.spectra = continued.cells.isEmpty ? nil : spectra
        return calibration
    }

    /// The compositions the models are fitted to beyond the phantom (g/cm²): soft tissue of 5
    /// to 35 g/cm² (the obese patients of the studies: 34–35 over the spine; the continuation
    /// is held against measured slabs to lean 35 and fat 12, `EffectiveSpectraTests`) in steps
    /// of 2.5, fat fractions 0 to 0.5 in tenths, each at every bone level of the phantom's
    /// cells, wherever the phantom's cells do not reach that lean and fat (leaner than its
    /// leanest, or more lean or fat than its most: its bounding box; ICD §8's phantom spans at
    /// least lean 5–25 and fat 0–6, a patient's tissue more).
    static let extensionSoftTissue = Array(stride(from: 5.0, through: 35.0, by: 2.5))
    static let extensionFatFractions = Array(stride(from: 0.0, through: 0.5, by: 0.1))

    /// The cells the effective spectra predict beyond the phantom's, each continued from the
    /// phantom's nearest cell of the same bone (its lean and fat held within the phantom's): the
    /// measured attenuations of that cell plus what the spectra say changes from its composition
    /// to the new one, so that the models meet the measured cells where the continuation begins
    /// (the spectra describe the phantom to about its noise, not better). Its soft-tissue ratio is
    /// that of the bone-free cell continued to the same lean and fat. The
    /// continuations of one cell share its weight: each gets, as its exposure, what gives it
    /// that cell's weight (exposure × low-window transmission) over their number, and `shares`
    /// the same fraction for the unweighted fat fit.
    static func extending(_ cells: [CalibrationPoint], by spectra: EffectiveSpectra) -> (cells: [CalibrationPoint], shares: [Double]) {
        let leans = cells.map(\.lean), fats = cells.map(\.fat)
        guard let leanLow = leans.min(), let leanHigh = leans.max(), let fatLow = fats.min(), let fatHigh = fats.max() else { return ([], []) }
        // The phantom's bone levels, as its cells have them.
        var levels: [Double] = []
        for b in cells.map(\.hydroxyapatite).sorted() where levels.last.map({ b - $0 > 1e-6 }) ?? true { levels.append(b) }
        let margin = 0.01
        func anchor(ha: Double, lean: Double, fat: Double) -> Int? {
            let l = min(max(lean, leanLow), leanHigh), f = min(max(fat, fatLow), fatHigh)
            return cells.indices.filter { abs(cells[$0].hydroxyapatite - ha) < 1e-6 }
                .min { abs(cells[$0].lean - l) + abs(cells[$0].fat - f) < abs(cells[$1].lean - l) + abs(cells[$1].fat - f) }
        }
        func continued(_ i: Int, ha: Double, lean: Double, fat: Double) -> (low: Double, high: Double)? {
            let a = cells[i]
            let there = spectra.attenuations(hydroxyapatite: ha, lean: lean, fat: fat)
            let here = spectra.attenuations(hydroxyapatite: a.hydroxyapatite, lean: a.lean, fat: a.fat)
            let low = a.lLow + there.low - here.low, high = a.lHigh + there.high - here.high
            return low.isFinite && high.isFinite && high > 0 ? (low, high) : nil
        }
        var out: [(point: CalibrationPoint, from: Int)] = []
        for total in extensionSoftTissue {
            for fraction in extensionFatFractions {
                let lean = total * (1 - fraction), fat = total * fraction
                guard lean < leanLow - margin || lean > leanHigh + margin || fat > fatHigh + margin else { continue }
                // The soft-tissue ratio every bone level at this lean and fat is measured against:
                // the bone-free cell's continuation, as a measured cell's ratio is its bone-free
                // partner's, so that soft tissue reads exactly 0 (every bone term carries
                // L_low − R·L_high). A phantom without bone-free cells: its lowest level's ratio,
                // scaled by the ratio's change the spectra predict.
                guard let lowest = levels.first, let j = anchor(ha: lowest, lean: lean, fat: fat) else { continue }
                let ratio: Double
                if lowest <= 1e-6 {
                    guard let t = continued(j, ha: 0, lean: lean, fat: fat) else { continue }
                    ratio = t.low / t.high
                } else {
                    let there = spectra.attenuations(hydroxyapatite: 0, lean: lean, fat: fat)
                    let here = spectra.attenuations(hydroxyapatite: 0, lean: cells[j].lean, fat: cells[j].fat)
                    ratio = cells[j].softRatio * (there.low / there.high) / (here.low / here.high)
                }
                guard ratio.isFinite, ratio > 0 else { continue }
                for ha in levels {
                    guard let i = anchor(ha: ha, lean: lean, fat: fat), let a = continued(i, ha: ha, lean: lean, fat: fat) else { continue }
                    out.append((CalibrationPoint(lLow: a.low, lHigh: a.high, softRatio: ratio, hydroxyapatite: ha, lean: lean, fat: fat,
                                                 pixels: 0, exposure: 0), i))
                }
            }
        }
        var count = [Int](repeating: 0, count: cells.count)
        for o in out { count[o.from] += 1 }
        let continued = out.map { o -> CalibrationPoint in
            var p = o.point
            let a = cells[o.from]
            p.exposure = a.exposure * Foundation.exp(-a.lLow) / Double(count[o.from]) * Foundation.exp(p.lLow)
            return p
        }
        return (continued, out.map { 1 / Double(count[$0.from]) })
    }

    /// The weighted residual sum of squares of the full bone model (`boneTerms`) over the
    /// usable points, and those points' weights (those of `fit`): what `LowWindowMixing`
    /// compares unmixings by. `weighing`: the points whose weights to use, the same cells in
    /// the same order (an unmixing lowers every cell's low-window count, and with it the weight
    /// `fit` would give it: compared under their own weights, the thick cells' residuals would
    /// count for less the more was unmixed, and the search would run to the largest). Nil
    /// where the model cannot be fitted or `weighing` lists other cells.
    static func boneMisfit(points: [CalibrationPoint], weighing: [CalibrationPoint]? = nil) -> (rss: Double, weighed: [CalibrationPoint])? {
        func usable(_ p: [CalibrationPoint]) -> [CalibrationPoint] {
            p.filter { $0.pixels >= 10 && $0.lLow.isFinite && $0.lHigh.isFinite && $0.softRatio.isFinite }
        }
        let cells = usable(points), weighed = weighing.map(usable) ?? cells
        guard cells.count > boneTermCount, weighed.count == cells.count,
              zip(cells, weighed).allSatisfy({ ($0.hydroxyapatite, $0.lean, $0.fat) == ($1.hydroxyapatite, $1.lean, $1.fat) }) else { return nil }
        let rows = cells.map { boneTerms($0.lLow, $0.lHigh, $0.softRatio) }
        let weights = weighed.map { $0.exposure * Foundation.exp(-$0.lLow) }
        let ha = cells.map(\.hydroxyapatite)
        guard let model = try? LinearModel.fit(rows, ha, weights: weights, centred: false) else { return nil }
        let rss = zip(zip(rows, ha), weights).reduce(0.0) { s, x in let d = model.evaluate(x.0.0) - x.0.1; return s + x.1 * d * d }
        return rss.isFinite ? (rss, weighed) : nil
    }

    /// The bone, soft-tissue and fat polynomials with their coefficients unfolded into
    /// registers, for the hot path: the terms of `boneTerms`, `softTerms` and
    /// `fatTerms` written out (a test holds them equal), no allocation per pixel. A model
    /// whose coefficient count does not match its terms evaluates to NaN, never to a number.
    public struct FastBoneModel: Sendable {
        typealias C6 = (Double, Double, Double, Double, Double, Double)
        typealias C16 = (Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double,
                         Double, Double, Double, Double)
        typealias C14 = (Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double)
        let b: C16, s: C14, f: C6

        init(bone: [Double], soft: [Double], fat: [Double]) {
            func at(_ a: [Double], _ i: Int, _ n: Int) -> Double { a.count == n ? a[i] : .nan }
            // A reduced model's missing terms are 0.
            let bone = bone.count == Calibration.boneTermCountReduced ? bone + [0, 0, 0, 0] : bone
            let nb = Calibration.boneTermCount
            b = (at(bone, 0, nb), at(bone, 1, nb), at(bone, 2, nb), at(bone, 3, nb), at(bone, 4, nb), at(bone, 5, nb),
                 at(bone, 6, nb), at(bone, 7, nb), at(bone, 8, nb), at(bone, 9, nb), at(bone, 10, nb), at(bone, 11, nb),
                 at(bone, 12, nb), at(bone, 13, nb), at(bone, 14, nb), at(bone, 15, nb))
            s = (at(soft, 0, 14), at(soft, 1, 14), at(soft, 2, 14), at(soft, 3, 14), at(soft, 4, 14), at(soft, 5, 14), at(soft, 6, 14),
                 at(soft, 7, 14), at(soft, 8, 14), at(soft, 9, 14), at(soft, 10, 14), at(soft, 11, 14), at(soft, 12, 14), at(soft, 13, 14))
            f = (at(fat, 0, 6), at(fat, 1, 6), at(fat, 2, 6), at(fat, 3, 6), at(fat, 4, 6), at(fat, 5, 6))
        }

        /// Bone mineral (g/cm²) of a pixel with attenuations (u, v) under soft tissue of ratio r.
        @inline(__always)
        public func bone(_ u: Double, _ v: Double, _ r: Double) -> Double {
            let x = u - r * v
            let p = b.0 + r * (b.1 + r * (b.2 + r * b.12)) + v * (b.3 + r * b.4 + v * (b.5 + v * b.13))
                + x * (b.6 + r * (b.7 + r * b.14) + v * (b.8 + r * b.15) + x * b.9)
                + v * r * (r * b.10 + v * b.11)
            return x * p
        }

        /// `bone` with its noise bias taken off: the model is a cubic in the bone signal
        /// x = u − r·v (f = A·x + B·x² + C·x³, A and B depending on v and r), so a pixel whose
        /// attenuations carry variances (varU, varV) reads on average ½·(f_xx·var x + 2·f_xv·cov(x, v)
        /// + f_vv·var v) too much: a bias that grows as counts fall (about +1.5 % at 28 photons
        /// per pixel) and that the mean over an ROI would otherwise keep. Second-order delta
        /// method; docs/physics.md.
        @inline(__always)
        public func unbiasedBone(_ u: Double, _ v: Double, _ r: Double, varU: Double, varV: Double, covUV: Double = 0) -> Double {
            let x = u - r * v
            let bB = b.6 + r * (b.7 + r * b.14) + v * (b.8 + r * b.15)
            let fxx = 2 * bB + 6 * b.9 * x
            let aV = b.3 + r * b.4 + 2 * v * b.5 + r * r * b.10 + 2 * v * r * b.11 + 3 * v * v * b.13
            let fxv = aV + 2 * x * (b.8 + r * b.15)
            let fvv = x * (2 * b.5 + 2 * r * b.11 + 6 * v * b.13)
            let varX = varU + r * r * varV - 2 * r * covUV, covXV = covUV - r * varV
            return bone(u, v, r) - 0.5 * (fxx * varX + 2 * fxv * covXV + fvv * varV)
        }

        /// The bone model's slopes at (u, v, r) by central differences (step 1e-5): how a pixel's
        /// noise in each attenuation and in the soft-tissue ratio carries into its bone mineral
        /// (the acceptance rule's photon noise, `CalibrationVerdict`; a scout's noise per photon,
        /// `Calibration.boneNoise`).
        public func slopes(_ u: Double, _ v: Double, _ r: Double) -> (u: Double, v: Double, r: Double) {
            let h = 1e-5
            return ((bone(u + h, v, r) - bone(u - h, v, r)) / (2 * h), (bone(u, v + h, r) - bone(u, v - h, r)) / (2 * h),
                    (bone(u, v, r + h) - bone(u, v, r - h)) / (2 * h))
        }

        /// Soft tissue (g/cm², lean and fat together) of the same pixel.
        @inline(__always)
        public func soft(_ u: Double, _ v: Double, _ r: Double) -> Double {
            s.0 + r * s.1 + u * (s.2 + r * (s.3 + r * s.4)) + v * (s.5 + r * (s.6 + r * s.7))
                + u * u * (s.8 + r * s.11) + v * v * (s.9 + r * s.12) + u * v * (s.10 + r * s.13)
        }

        @inline(__always)
        public func evaluate(_ u: Double, _ v: Double, _ r: Double) -> (bone: Double, soft: Double) {
            (bone(u, v, r), soft(u, v, r))
        }

        /// Fat fraction of a bone-free pixel.
        @inline(__always)
        public func fatFraction(_ u: Double, _ v: Double) -> Double {
            let r = u / v
            return f.0 + r * (f.1 + r * f.3 + v * f.4) + v * (f.2 + v * f.5)
        }

        /// The ratio u/v that bone-free tissue of high-window attenuation v has at fat fraction
        /// `fat` (the fat model solved for the ratio: a quadratic, the root where the fat fraction
        /// falls as the ratio rises); nil where the model has no such ratio.
        public func tissueRatio(highAttenuation v: Double, fat: Double) -> Double? {
            let a = f.3, b = f.1 + v * f.4, c = f.0 + v * (f.2 + v * f.5) - fat
            guard a != 0 else { return b < 0 ? -c / b : nil }
            let disc = b * b - 4 * a * c
            guard disc >= 0 else { return nil }
            let root = disc.squareRoot()
            // The two roots in turn (no array: this runs for every pixel with a baseline, and three
            // times more for every pixel under bone).
            let first = (-b - root) / (2 * a)
            if first > 0 && 2 * a * first + b < 0 { return first }
            let second = (-b + root) / (2 * a)
            if second > 0 && 2 * a * second + b < 0 { return second }
            return nil
        }
    }

    public var fastBoneModel: FastBoneModel {
        FastBoneModel(bone: hydroxyapatite.rawCoefficients, soft: softTissue.rawCoefficients, fat: fatFraction.rawCoefficients)
    }

    /// True when every model has as many coefficients as it has terms and the channel response
    /// is whole (a calibration file from elsewhere may not be).
    public var isWellFormed: Bool {
        func ok(_ m: LinearModel, _ n: Int) -> Bool {
            m.coefficients.count == n && m.means.count == n && m.scales.count == n && m.coefficients.allSatisfy(\.isFinite)
        }
        let response = channelResponse.map { $0.fits(channels: $0.channels) && $0.channels > 0 } ?? false
        // The low window's unmixing within what the calibration searches (a value outside it
        // would be set aside by the stage, and the models, fitted to unmixed cells, read wrong).
        let mixing = lowWindowMixing.map { $0.isFinite && $0 >= 0 && $0 <= LowWindowMixing.largest } ?? true
        let airRatio = lowWindowAirRatio.map { $0.isFinite && $0 > 0 && $0 < 1_000 } ?? true
        // Squares came with format 7: a file of an older format that has them was not fitted
        // with them by this software.
        let squares = version >= 7 || channelResponse?.lowSquare == nil
        // Spectra from a file must be whole (their bins within the table, as many weights as bins).
        let spectraWhole = spectra?.isWellFormed ?? true
        return (ok(hydroxyapatite, Self.boneTermCount) || ok(hydroxyapatite, Self.boneTermCountReduced)) && ok(softTissue, 14) && ok(fatFraction, 6)
            && response && mixing && airRatio && squares && spectraWhole
    }

    /// Fat fraction of a bone-free pixel.
    public func fatFraction(lLow u: Double, lHigh v: Double) -> Double {
        fatFraction.evaluate(Self.fatTerms(u / v, v))
    }
}

/// A unit as GET_INFO names it: model and serial.
public struct CalibratedUnit: Sendable, Equatable, Codable, CustomStringConvertible {
    public var model: String
    public var serial: String

    public init(model: String, serial: String) { self.model = model; self.serial = serial }
    public init(_ info: DeviceInfo) { self.init(model: info.model, serial: info.serial) }

    public func matches(_ info: DeviceInfo) -> Bool { model == info.model && serial == info.serial }
    public var description: String { "\(model) \(serial)" }
}

/// Where each pixel of a line lies (ICD §6 geometry).
public struct ScanGeometry: Sendable, Equatable {
    public var channels: Int
    public var pitchUm: Int

    public init(channels: Int, pitchUm: Int) { self.channels = channels; self.pitchUm = pitchUm }

    public func x(ofChannel c: Int, carriageX: Int32) -> Double {
        Double(carriageX) + (Double(c) - Double(channels - 1) / 2) * Double(pitchUm)
    }
}

/// Each channel's spectral response, as a scale of its log attenuations onto the detector's
/// mean: channels differ in their energy thresholds and see the tube's spectrum from other
/// angles (the heel effect), so the same tissue attenuates a little differently in each. A
/// scale per channel and window, measured on the calibration phantom's cells as every channel
/// sees them, takes that out before the calibration applies.
public struct ChannelResponse: Sendable, Equatable, Codable {
    public var low: [Double]
    public var high: [Double]
    /// Each channel's low window as k·L_low + b·L_high + q·L_low²: the b (`ChannelCrossTerm.swift`;
    /// nil: 0 for every channel, the scales alone).
    public var lowCross: [Double]?
    /// The q of the low window's map (nil: 0 for every channel; only with `lowCross`).
    public var lowSquare: [Double]?

    public init(low: [Double], high: [Double], lowCross: [Double]? = nil, lowSquare: [Double]? = nil) {
        self.low = low; self.high = high; self.lowCross = lowCross; self.lowSquare = lowSquare
    }

    public static func identity(channels n: Int) -> ChannelResponse {
        ChannelResponse(low: [Double](repeating: 1, count: n), high: [Double](repeating: 1, count: n))
    }

    public var channels: Int { low.count }

    /// Usable for a detector of `n` channels: every scale finite and positive.
    /// A cross term and a square, where there are, within what the calibration keeps
    /// (`CalibrationMeasurement.plausibleCross`, `plausibleSquare`); a square only with a cross
    /// term (the calibration fits it only over one).
    public func fits(channels n: Int) -> Bool {
        func within(_ t: [Double]?, _ limit: Double) -> Bool { t.map { $0.count == n && $0.allSatisfy { $0.isFinite && abs($0) <= limit } } ?? true }
        return low.count == n && high.count == n && (low + high).allSatisfy { $0.isFinite && $0 > 0 }
            && within(lowCross, CalibrationMeasurement.plausibleCross) && within(lowSquare, CalibrationMeasurement.plausibleSquare)
            && (lowSquare == nil || lowCross != nil)
    }
}

/// How the calibration phantom is scanned, for the daemon, the tests and the benchmark alike:
/// dark and air references, then two exposures (thin cells at 50 ms·mA, where the thinnest does
/// not saturate; thick ones at 1.2 s·mA, where they still get photons) at nine carriage
/// positions, a cell's width and a ninth apart (`stepInCellWidths`), 0.5 mm between lines, so
/// that every channel sees cell interiors at several phases and each cell is seen by many
/// channels (`CalibrationMeasurement` measures each channel's response from that); the
/// scatter passes at whole widths. The calibration's own photon noise is the largest error left in a
/// patient's result (docs/physics.md), so it takes photons: 405 s of exposure.
public struct CalibrationProcedure: Sendable, Equatable {
    /// Each pass as the device is to be configured (scan id 0: the runner gives it one).
    public var passes: [ScanConfiguration]

    /// Exposures: (line period µs, tube current µA).
    public static let exposures: [(UInt32, UInt32)] = [(50_000, 1000), (400_000, 3000)]
    /// Carriage positions either side of the phantom's centre: `offsets` steps of
    /// `stepInCellWidths` cell widths (the scatter passes: whole widths).
    public static let offsets = -4...4
    /// One cell width and 1/9 (1/`offsets.count`): each step moves the cells' edges across the
    /// detector by a ninth of a width more, so that over the nine positions every channel sees
    /// cell interiors (at about 5 of them, the interior being 5/8 of a width). A step of exactly
    /// one width put the interiors on the same channels at every position: with 8 mm cells on
    /// a 1 mm pitch, 54 of the 144 channels (those 2–4 mm from a cell's edge) never saw one and
    /// kept a response of 1, unmeasured and unsaid (found 2026-12-06 by an outside analysis of
    /// the second physics model, whose channels differ; docs/physics.md).
    public static var stepInCellWidths: Double { Double(offsets.count + 1) / Double(offsets.count) }
    /// Passes at the air reference's exposure, where the air beside the phantom does not
    /// saturate: the scatter in the fan is measured there (`ScatterModel`; these passes do not
    /// enter the cells' measurement), at every
    /// position, so that each distance from the phantom's edge is seen by many channels (at
    /// the outer positions the fan sees up to 44 mm of air beside the phantom).
    public static let scatterExposure: (UInt32, UInt32) = (10_000, 1000)
    public static let scatterOffsets = Array(offsets)

    /// The passes over `phantom` for a detector with `travelXUm` of carriage travel, `stepUm`
    /// apart along the table; nil when the phantom has no cells.
    public init?(phantom: Phantom, travelXUm: UInt32, stepUm: Int32 = 500) {
        guard let cells = phantom.cells?.filter({ $0.xUm.count == 2 && $0.yUm.count == 2 }), !cells.isEmpty else { return nil }
        let ys = cells.flatMap(\.yUm), xs = cells.flatMap(\.xUm)
        guard let y0 = ys.min(), let y1 = ys.max(), let x0 = xs.min(), let x1 = xs.max(), stepUm > 0 else { return nil }
        let widths = cells.map { abs(Int64($0.xUm[1]) - Int64($0.xUm[0])) }.sorted()
        let cellWidth = widths[widths.count / 2]
        let centre = (Int64(x0) + Int64(x1)) / 2
        var positions: [Int32] = []
        let lines = UInt32(max(1, (Int64(y1) - Int64(y0)) / Int64(stepUm)))
        func at(_ k: Int) -> Int64 { centre + Int64((Double(k) * Self.stepInCellWidths * Double(cellWidth)).rounded()) }
        for k in Self.offsets {
            let x = at(k)
            if x >= 0 && x <= Int64(travelXUm), let position = Int32(exactly: x) { positions.append(position) }
        }
        func pass(_ x: Int32, _ exposure: (UInt32, UInt32)) -> ScanConfiguration {
            ScanConfiguration(scanID: 0, mode: .dual, xUm: x, yStartUm: y0, lineCount: lines, lineStepUm: stepUm,
                              linePeriodUs: exposure.0, tubeCurrentUA: exposure.1, linesPerFrame: 16)
        }
        passes = Self.exposures.flatMap { exposure in positions.map { pass($0, exposure) } }
        // The scatter passes at whole cell widths, as measured before (2026-12-04): they read
        // the air beside the phantom, where the cells' phase does not matter.
        for k in Self.scatterOffsets {
            let x = centre + Int64(k) * cellWidth
            if x >= 0 && x <= Int64(travelXUm), let position = Int32(exactly: x) { passes.append(pass(position, Self.scatterExposure)) }
        }
    }
}

/// Measures a calibration phantom's cells in a scan: mean attenuations over each cell's
/// interior (a margin away from its edges), and each cell's soft-tissue ratio from the cell
/// of the same lean and fat without bone.
/// A cell may be measured in several scans: thin cells in a short exposure that does not
/// saturate, thick ones in a long one that brings enough photons through. Transmissions are
/// pooled by channel, weighted by exposure (Σ counts / Σ expected air counts), so each pixel
/// counts by the photons it saw. Each channel's response is measured from the cells it saw
/// (`ChannelResponse`), and a cell's attenuations are the mean over the channels that saw it,
/// each put onto the detector's mean response.
public enum CalibrationMeasurement {
    /// What a channel that counted but saw no cell's interior does to the calibration, away
    /// from the fan's ends. A new calibration (`service.calibrate`) is refused: its passes did
    /// not cover the detector. A calibration capture from the archive is fitted again with
    /// such channels inferred from their neighbours and listed: captures made before
    /// 2026-12-06 stepped the carriage by whole cell widths and leave 54 of 144 channels
    /// unseen, and refusing them would leave their scans unanalysable.
    public enum Coverage: Sendable, Equatable {
        case refuseGaps
        case inferGaps
    }

    public struct Result: Sendable, Equatable {
        public var points: [CalibrationPoint]
        public var response: ChannelResponse
        /// Channels that counted in the calibration's lines but saw no cell's interior, so
        /// that their response could not be measured: at the fan's ends only, where the
        /// phantom lay under them at fewer than half the carriage positions (their response is
        /// then their nearest measured neighbours'); any other refuses the calibration
        /// (`measure`).
        public var unmeasured: [Int] = []
        /// The low window's unmixing the points were measured with (`LowWindowMixing`; 0: none).
        public var lowWindowMixing = 0.0
    }

    public static func points(lines: [AttenuationLine], geometry: ScanGeometry, phantom: Phantom,
                              marginUm: Double = 1_500, coverage: Coverage = .refuseGaps) throws(DecompositionError) -> [CalibrationPoint] {
        try measure(lines: lines, geometry: geometry, phantom: phantom, marginUm: marginUm, coverage: coverage).points
    }

    /// One cell as one channel saw it, pooled over lines and exposures.
    struct Sum: Sendable {
        var u = 0.0, v = 0.0, e = 0.0, varU = 0.0, varV = 0.0, n = 0

        /// The low window's sums unmixed (`LowWindowMixing`): u' = (u − f·v)/(1 − f), its
        /// variance (var u + f²·var v)/(1 − f)²; none left (u' ≤ 0) reads as unmeasured.
        func unmixed(_ f: Double) -> Sum {
            var s = self
            let k = 1 / (1 - f)
            s.u = (u - f * v) * k
            s.varU = (varU + f * f * varV) * k * k
            return s
        }
    }

    public static func measure(lines: [AttenuationLine], geometry: ScanGeometry, phantom: Phantom,
                               marginUm: Double = 1_500, coverage: Coverage = .refuseGaps) throws(DecompositionError) -> Result {
        try measure(each: { body throws(DecompositionError) in for line in lines { body(line) } }, geometry: geometry, phantom: phantom,
                    marginUm: marginUm, coverage: coverage)
    }

    /// The same with the lines made as they are needed: `each` hands every line to its body
    /// and is called twice (the saturated cells first, then the sums), so that a calibration's
    /// attenuation lines (17 bytes a pixel) are never all held at once (issue 18).
    public static func measure(each: (_ body: (AttenuationLine) -> Void) throws(DecompositionError) -> Void, geometry: ScanGeometry,
                               phantom: Phantom, marginUm: Double = 1_500, coverage: Coverage = .refuseGaps) throws(DecompositionError) -> Result {
        try solve(gather(each: each, geometry: geometry, phantom: phantom, marginUm: marginUm), lowWindowMixing: 0, coverage: coverage)
    }

    /// Each cell's transmissions as each channel saw them, pooled over lines and exposures
    /// (sums of exposure × transmission, linear in the transmissions), with what the
    /// measurement needs besides: which channels counted, and where the carriage stood. From
    /// these the cells' attenuations follow for any unmixing of the low window
    /// (`LowWindowMixing`) without a second pass over the lines.
    public struct Gathered: Sendable {
        let sums: [[Sum]]
        let live: [Bool]
        let positions: Set<Int32>
        let cells: [Phantom.Cell]
        let geometry: ScanGeometry
    }

    /// The pooled sums (`Gathered`) from a calibration's lines; `each` as for `measure`.
    public static func gather(each: (_ body: (AttenuationLine) -> Void) throws(DecompositionError) -> Void, geometry: ScanGeometry,
                              phantom: Phantom, marginUm: Double = 1_500) throws(DecompositionError) -> Gathered {
        guard let cells = phantom.cells, !cells.isEmpty else { throw .calibrationRangeMissing("any cells (the phantom lists none)") }
        let n = geometry.channels
        // A cell is measured in a scan only if none of its pixels saturated there: leaving out
        // just the saturated pixels would keep those whose noise went down, and bias the cell.
        // (Scans differ in exposure or carriage position.)
        struct Visit: Hashable { var cell: Int; var exposure: Double; var xUm: Int32 }
        var saturatedIn = Set<Visit>()
        func interior(_ cell: Phantom.Cell) -> (x0: Double, x1: Double, y0: Double, y1: Double)? {
            guard cell.yUm.count == 2 && cell.xUm.count == 2 else { return nil }
            return (Double(min(cell.xUm[0], cell.xUm[1])) + marginUm, Double(max(cell.xUm[0], cell.xUm[1])) - marginUm,
                    Double(min(cell.yUm[0], cell.yUm[1])) + marginUm, Double(max(cell.yUm[0], cell.yUm[1])) - marginUm)
        }
        let boxes = cells.map(interior)
        // The channels that counted at all (a dead channel never does: its response does not
        // matter, since none of its pixels carries a number).
        var live = [Bool](repeating: false, count: n)
        // And the carriage positions the lines were taken at.
        var positions = Set<Int32>()
        try each { line in
            let y = Double(line.yUm)
            positions.insert(line.xUm)
            for c in 0..<min(line.channels, n) where !live[c] && line.flags[c].isMeasured { live[c] = true }
            for (k, box) in boxes.enumerated() {
                guard let b = box, y >= b.y0 && y < b.y1 else { continue }
                for c in 0..<min(line.channels, n) where line.flags[c].contains(.saturated) {
                    let x = geometry.x(ofChannel: c, carriageX: line.xUm)
                    if x >= b.x0 && x < b.x1 { saturatedIn.insert(Visit(cell: k, exposure: line.exposure, xUm: line.xUm)) }
                }
            }
        }
        var sums = [[Sum]](repeating: [Sum](repeating: Sum(), count: n), count: cells.count)
        try each { line in
            guard line.channels == n && line.transmissionLow.count == n && line.transmissionHigh.count == n else { return }
            let y = Double(line.yUm)
            let noise = line.transmissionVarianceLow.count == n && line.transmissionVarianceHigh.count == n
            for (k, box) in boxes.enumerated() {
                guard let b = box, y >= b.y0 && y < b.y1,
                      !saturatedIn.contains(Visit(cell: k, exposure: line.exposure, xUm: line.xUm)) else { continue }
                let e = line.exposure
                for c in 0..<n where !line.flags[c].contains(.saturated) && !line.flags[c].contains(.noBeam) {
                    let x = geometry.x(ofChannel: c, carriageX: line.xUm)
                    guard x >= b.x0 && x < b.x1, line.transmissionLow[c].isFinite, line.transmissionHigh[c].isFinite else { continue }
                    sums[k][c].u += e * line.transmissionLow[c]; sums[k][c].v += e * line.transmissionHigh[c]
                    sums[k][c].e += e; sums[k][c].n += 1
                    if noise {
                        sums[k][c].varU += e * e * line.transmissionVarianceLow[c]
                        sums[k][c].varV += e * e * line.transmissionVarianceHigh[c]
                    }
                }
            }
        }
        return Gathered(sums: sums, live: live, positions: positions, cells: cells, geometry: geometry)
    }

    /// The cells' points and the channels' responses from the pooled sums, the low window
    /// unmixed with the fraction `f` of its air counts that are high-energy photons
    /// (`LowWindowMixing`: T_L' = (T_L − f·T_H)/(1 − f), linear, so it applies to the sums).
    /// `crossTerms`: the low window's cross term per channel where the cells ask for it
    /// (`ChannelResponse.lowCross`); off for `LowWindowMixing`'s trials, which compare
    /// unmixings under the scales alone.
    public static func solve(_ gathered: Gathered, lowWindowMixing f: Double, coverage: Coverage,
                             crossTerms: Bool = true) throws(DecompositionError) -> Result {
        guard f.isFinite, f >= 0, f < 1 else { throw .singularFit("the low window's unmixing \(f) is outside 0 to 1") }
        let cells = gathered.cells, geometry = gathered.geometry, n = geometry.channels
        let live = gathered.live, positions = gathered.positions
        let sums = f == 0 ? gathered.sums : gathered.sums.map { $0.map { $0.unmixed(f) } }
        // Each (cell, channel): the log of its pooled transmission, less the log's bias, and its
        // variance (Σe²·var T / (Σe·T)²).
        // Weights: the photons each (cell, channel) can be expected to hold, from the cell's
        // transmission pooled over all its channels, never from that channel's own count (a
        // weight that grows with the count it weighs biases the mean towards counts that
        // fluctuated up: −1/N in the log).
        var pooledLow = [Double](repeating: 0, count: cells.count), pooledHigh = pooledLow
        for k in cells.indices {
            var u = 0.0, v = 0.0, e = 0.0
            for c in 0..<n { u += sums[k][c].u; v += sums[k][c].v; e += sums[k][c].e }
            if e > 0 { pooledLow[k] = max(u / e, 0); pooledHigh[k] = max(v / e, 0) }
        }
        struct Seen { var u: Double; var v: Double; var varU: Double; var varV: Double; var pixels: Int; var e: Double
                      var weightU: Double; var weightV: Double }
        // In channel order, so that sums come out the same in every process.
        var seen = [[(Int, Seen)]](repeating: [], count: cells.count)
        for k in cells.indices {
            for c in 0..<n {
                let s = sums[k][c]
                guard s.e > 0, s.u > 0, s.v > 0 else { continue }
                let varU = s.varU / (s.u * s.u), varV = s.varV / (s.v * s.v)
                seen[k].append((c, Seen(u: -Foundation.log(s.u / s.e) - varU / 2, v: -Foundation.log(s.v / s.e) - varV / 2,
                                  varU: varU, varV: varV, pixels: s.n, e: s.e,
                                  weightU: s.e * pooledLow[k], weightV: s.e * pooledHigh[k])))
            }
        }
        // Channel responses and cell values by alternating least squares: a cell's value is the
        // weighted mean of its channels' corrected logs; a channel's scale the one that best puts
        // its logs onto those values; the scales' mean held at 1.
        var sL = [Double](repeating: 1, count: n), sH = sL
        var refU = [Double](repeating: .nan, count: cells.count), refV = refU
        var varRefU = refU, varRefV = refU
        /// The scale that best maps a channel's logs onto the cells' values (weighted least
        /// squares through the origin). A curvature per channel was tried and not kept: it
        /// made the results depend on an arbitrary choice of the reference's own curvature.
        struct Normal {
            var a11 = 0.0, b1 = 0.0
            mutating func add(_ l: Double, _ ref: Double, _ w: Double) { a11 += w * l * l; b1 += w * l * ref }
            var scale: Double? { a11 > 0 ? b1 / a11 : nil }
        }
        var measured: [Int] = []
        for _ in 0..<20 {
            for k in cells.indices where !seen[k].isEmpty {
                var su = 0.0, wu = 0.0, sv = 0.0, wv = 0.0
                var vu = 0.0, vv = 0.0
                for (c, x) in seen[k] {
                    let a = x.weightU / (sL[c] * sL[c]), b = x.weightV / (sH[c] * sH[c])
                    su += a * sL[c] * x.u; wu += a
                    sv += b * sH[c] * x.v; wv += b
                    vu += a * a * x.varU * sL[c] * sL[c]; vv += b * b * x.varV * sH[c] * sH[c]
                }
                guard wu > 0, wv > 0 else { continue }
                refU[k] = su / wu; refV[k] = sv / wv
                varRefU[k] = vu / (wu * wu); varRefV[k] = vv / (wv * wv)
            }
            var low = [Normal](repeating: Normal(), count: n), high = low
            for k in cells.indices where refU[k].isFinite {
                for (c, x) in seen[k] {
                    low[c].add(x.u, refU[k], x.weightU)
                    high[c].add(x.v, refV[k], x.weightV)
                }
            }
            measured = []
            for c in 0..<n {
                guard let l = low[c].scale, let h = high[c].scale, l > 0, h > 0 else { continue }
                sL[c] = l
                sH[c] = h
                measured.append(c)
            }
            guard !measured.isEmpty else { break }
            let meanL = measured.reduce(0) { $0 + sL[$1] } / Double(measured.count)
            let meanH = measured.reduce(0) { $0 + sH[$1] } / Double(measured.count)
            for c in measured { sL[c] /= meanL; sH[c] /= meanH }
        }
        // The low window's map beyond its scale (`ChannelCrossTerm.swift`): the high window's
        // log and its own log's square, where the cells ask for them. (The high window's too
        // was tried, 2026-12-07: on the first physics model, whose channels differ in gain
        // alone, the F test kept a cross term and a square there, and its tissue matrix read
        // worse, L1 under lean 30 fat 6 +6.34 → +7.33 %: not kept.)
        // Only channels that saw `crossTermCells` cells or more take part (the fan's ends see
        // as few as four: with two parameters each, they came out wild and, through the mean
        // held at the detector's, pulled every other channel's term; on the whole second model
        // b = −11.6 at channel 0 and +0.2 at the centre). The others keep a scale alone, fitted
        // again onto the cells' new values.
        var crossLow: [Double]? = nil, squareLow: [Double]? = nil
        var cellsSeen = [Int](repeating: 0, count: n)
        for k in cells.indices { for (c, _) in seen[k] { cellsSeen[c] += 1 } }
        let crossed = measured.filter { cellsSeen[$0] >= crossTermCells }
        /// The window's map where the cells ask for it: the crossed channels' terms, the others'
        /// scales fitted again, the cells' values and variances replaced. Nil: the scales alone.
        func extend(_ views: [[View]], scale: inout [Double], values: inout [Double], variances: inout [Double])
            -> (cross: [Double], square: [Double]?)? {
            guard let r = responseIfNeeded(views, channels: crossed) else { return nil }
            var b = [Double](repeating: 0, count: n), q = [Double](repeating: 0, count: n)
            for c in crossed {
                if let k = r.scale[c] { scale[c] = k }
                b[c] = r.cross[c] ?? 0
                q[c] = r.square[c] ?? 0
            }
            for k in cells.indices where r.values[k].isFinite { values[k] = r.values[k]; variances[k] = r.variances[k] }
            var rest = [Normal](repeating: Normal(), count: n)
            let others = Set(measured).subtracting(crossed)
            for k in cells.indices where values[k].isFinite {
                for x in views[k] where others.contains(x.channel) { rest[x.channel].add(x.u, values[k], x.weight) }
            }
            for c in others { if let k = rest[c].scale, k > 0 { scale[c] = k } }
            // A cell no crossed channel saw takes its value from the others, as now scaled,
            // not the one the scales alone gave (normalised otherwise).
            for k in cells.indices where !r.values[k].isFinite {
                var sum = 0.0, total = 0.0, noise = 0.0
                for x in views[k] where others.contains(x.channel) {
                    sum += x.weight * scale[x.channel] * x.u; total += x.weight
                    noise += x.weight * x.weight * scale[x.channel] * scale[x.channel] * x.varU
                }
                if total > 0 { values[k] = sum / total; variances[k] = noise / (total * total) }
            }
            return (b, r.terms > 2 ? q : nil)
        }
        if crossTerms, crossed.count >= 2 {
            let lowViews = seen.map { $0.map { c, x in View(channel: c, u: x.u, v: x.v, varU: x.varU, varV: x.varV, weight: x.weightU) } }
            if let m = extend(lowViews, scale: &sL, values: &refU, variances: &varRefU) { crossLow = m.cross; squareLow = m.square }
        }
        var softRatio: [String: Double] = [:]
        for (k, cell) in cells.enumerated() where cell.hydroxyapatite == 0 && refU[k].isFinite && refV[k] > 0 {
            softRatio["\(cell.lean)/\(cell.fat)"] = refU[k] / refV[k]
        }
        let points = cells.enumerated().compactMap { k, cell -> CalibrationPoint? in
            guard refU[k].isFinite, refV[k].isFinite, let r = softRatio["\(cell.lean)/\(cell.fat)"] else { return nil }
            let pixels = seen[k].reduce(0) { $0 + $1.1.pixels }, exposure = seen[k].reduce(0) { $0 + $1.1.e }
            return CalibrationPoint(lLow: refU[k], lHigh: refV[k], softRatio: r, hydroxyapatite: cell.hydroxyapatite,
                                    lean: cell.lean, fat: cell.fat, pixels: pixels, exposure: exposure,
                                    varianceLow: varRefU[k], varianceHigh: varRefV[k])
        }
        // A channel that counted and was not measured. One the phantom lay under at fewer than
        // half the carriage positions (the fan's ends: the phantom is narrower than the fan,
        // and there the few positions that bring a cell may all put a cell's margin on it)
        // takes the mean response of the nearest measured channel on each side, and is listed
        // (`unmeasured`). One under the phantom at most positions that never saw a cell's
        // interior shows that the passes do not cover the detector (the cells' edges at the
        // same place each time): any response there would be a guess, refused.
        // How many of the positions put each channel over the phantom's cells (from the first
        // cell's left edge to the last one's right).
        let xs = cells.flatMap(\.xUm).map(Double.init)
        let span = (xs.min() ?? 0)...(xs.max() ?? 0)
        func overPhantom(_ c: Int) -> Int { positions.filter { span.contains(geometry.x(ofChannel: c, carriageX: $0)) }.count }
        let seenChannels = Set(measured)
        let unmeasured = (0..<n).filter { live[$0] && !seenChannels.contains($0) }
        let inside = unmeasured.filter { 2 * overPhantom($0) >= positions.count }
        if !inside.isEmpty && !measured.isEmpty && coverage == .refuseGaps {
            throw .calibrationRangeMissing("every channel: channels \(DecompositionError.list(inside)) saw no cell's interior, so their response is unknown")
        }
        for c in unmeasured {
            let below = measured.last { $0 < c }, above = measured.first { $0 > c }
            let near = [below, above].compactMap { $0 }
            guard !near.isEmpty else { continue }
            sL[c] = near.map { sL[$0] }.reduce(0, +) / Double(near.count)
            sH[c] = near.map { sH[$0] }.reduce(0, +) / Double(near.count)
            func fill(_ t: inout [Double]?) { if let b = t { t?[c] = near.map { b[$0] }.reduce(0, +) / Double(near.count) } }
            fill(&crossLow); fill(&squareLow)
        }
        return Result(points: points, response: ChannelResponse(low: sL, high: sH, lowCross: crossLow, lowSquare: squareLow),
                      unmeasured: unmeasured, lowWindowMixing: f)
    }
}
