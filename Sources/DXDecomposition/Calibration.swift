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
    public static let formatVersion = 2
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

    /// Terms of the bone model. Monoenergetically BMD = (L_low − R·L_high)/(μ_b,low − R·μ_b,high):
    /// the "bone signal" b₀ = L_low − R·L_high over a factor that depends on R. The beam's
    /// hardening makes the factor depend on b₀ and L_high too, so BMD = b₀·P(b₀, L_high, R) with
    /// P a low-order polynomial. Every term carries b₀, so soft tissue whose ratio is R reads
    /// exactly 0 whatever its thickness.
    static func boneTerms(_ u: Double, _ v: Double, _ r: Double) -> [Double] {
        let b = u - r * v
        return [b, b * r, b * r * r, b * v, b * v * r, b * v * v, b * b, b * b * r, b * b * v, b * b * b, b * v * r * r, b * v * v * r]
    }

    /// Terms of the soft-tissue model: linear in the attenuations with coefficients that
    /// depend on R, and their squares for the hardening.
    static func softTerms(_ u: Double, _ v: Double, _ r: Double) -> [Double] {
        let ur = u * r, vr = v * r, uu = u * u, vv = v * v, uv = u * v
        return [1, r, u, ur, ur * r, v, vr, vr * r, uu, vv, uv, uu * r, vv * r, uv * r]
    }

    static func fatTerms(_ r: Double, _ v: Double) -> [Double] { [1, r, v, r * r, r * v, v * v] }

    /// Fits from measured cells. The cells must span the ICD's ranges.
    public static func fit(points: [CalibrationPoint], source: String) throws(DecompositionError) -> Calibration {
        let usable = points.filter { $0.pixels >= 10 && $0.lLow.isFinite && $0.lHigh.isFinite && $0.softRatio.isFinite }
        let needed = 20
        guard usable.count >= needed else { throw .tooFewCalibrationPoints(usable.count, needed: needed) }
        let ha = usable.map(\.hydroxyapatite), lean = usable.map(\.lean), fat = usable.map(\.fat)
        guard (ha.min() ?? 1) <= 0.05, (ha.max() ?? 0) >= 1.95 else { throw .calibrationRangeMissing("hydroxyapatite 0 to 2.0 g/cm²") }
        guard (lean.min() ?? 99) <= 5.5, (lean.max() ?? 0) >= 24.5 else { throw .calibrationRangeMissing("lean 5 to 25 g/cm²") }
        guard (fat.min() ?? 99) <= 0.05, (fat.max() ?? 0) >= 5.95 else { throw .calibrationRangeMissing("fat 0 to 6 g/cm²") }

        let boneRows = usable.map { boneTerms($0.lLow, $0.lHigh, $0.softRatio) }
        // Weight each cell by the photons behind its measurement (exposure × low-window
        // transmission): photon-starved thick cells must not pull the fit where data is good.
        let weights = usable.map { $0.exposure * Foundation.exp(-$0.lLow) }
        let softRows = usable.map { softTerms($0.lLow, $0.lHigh, $0.softRatio) }
        let haModel = try LinearModel.fit(boneRows, ha, weights: weights, centred: false)
        let softModel = try LinearModel.fit(softRows, usable.map { $0.lean + $0.fat }, weights: weights)
        let softOnly = usable.filter { $0.hydroxyapatite == 0 }
        let fatRows = softOnly.map { fatTerms($0.lLow / $0.lHigh, $0.lHigh) }
        let fatModel = try LinearModel.fit(fatRows, softOnly.map { $0.fat / max($0.lean + $0.fat, 1e-9) })

        func rms(_ m: LinearModel, _ rows: [[Double]], _ t: [Double]) -> Double {
            (zip(rows, t).map { let d = m.evaluate($0) - $1; return d * d }.reduce(0, +) / Double(t.count)).squareRoot()
        }
        return Calibration(
            source: source, created: Date().formatted(.iso8601), hydroxyapatite: haModel, softTissue: softModel, fatFraction: fatModel,
            points: usable,
            residualHydroxyapatite: rms(haModel, boneRows, ha),
            residualSoftTissue: rms(softModel, softRows, usable.map { $0.lean + $0.fat }),
            residualFatFraction: rms(fatModel, fatRows, softOnly.map { $0.fat / max($0.lean + $0.fat, 1e-9) }))
    }

    /// The bone, soft-tissue and fat polynomials with their coefficients unfolded into
    /// registers, for the hot path: the terms of `boneTerms`, `softTerms` and
    /// `fatTerms` written out (a test holds them equal), no allocation per pixel. A model
    /// whose coefficient count does not match its terms evaluates to NaN, never to a number.
    public struct FastBoneModel: Sendable {
        typealias C6 = (Double, Double, Double, Double, Double, Double)
        typealias C12 = (Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double)
        typealias C14 = (Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double, Double)
        let b: C12, s: C14, f: C6

        init(bone: [Double], soft: [Double], fat: [Double]) {
            func at(_ a: [Double], _ i: Int, _ n: Int) -> Double { a.count == n ? a[i] : .nan }
            b = (at(bone, 0, 12), at(bone, 1, 12), at(bone, 2, 12), at(bone, 3, 12), at(bone, 4, 12), at(bone, 5, 12),
                 at(bone, 6, 12), at(bone, 7, 12), at(bone, 8, 12), at(bone, 9, 12), at(bone, 10, 12), at(bone, 11, 12))
            s = (at(soft, 0, 14), at(soft, 1, 14), at(soft, 2, 14), at(soft, 3, 14), at(soft, 4, 14), at(soft, 5, 14), at(soft, 6, 14),
                 at(soft, 7, 14), at(soft, 8, 14), at(soft, 9, 14), at(soft, 10, 14), at(soft, 11, 14), at(soft, 12, 14), at(soft, 13, 14))
            f = (at(fat, 0, 6), at(fat, 1, 6), at(fat, 2, 6), at(fat, 3, 6), at(fat, 4, 6), at(fat, 5, 6))
        }

        /// Bone mineral (g/cm²) of a pixel with attenuations (u, v) under soft tissue of ratio r.
        @inline(__always)
        public func bone(_ u: Double, _ v: Double, _ r: Double) -> Double {
            let x = u - r * v
            let p = b.0 + r * (b.1 + r * b.2) + v * (b.3 + r * b.4 + v * b.5) + x * (b.6 + r * b.7 + v * b.8 + x * b.9)
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
        public func unbiasedBone(_ u: Double, _ v: Double, _ r: Double, varU: Double, varV: Double) -> Double {
            let x = u - r * v
            let bB = b.6 + r * b.7 + v * b.8
            let fxx = 2 * bB + 6 * b.9 * x
            let aV = b.3 + r * b.4 + 2 * v * b.5 + r * r * b.10 + 2 * v * r * b.11
            let fxv = aV + 2 * x * b.8
            let fvv = x * (2 * b.5 + 2 * r * b.11)
            let varX = varU + r * r * varV, covXV = -r * varV
            return bone(u, v, r) - 0.5 * (fxx * varX + 2 * fxv * covXV + fvv * varV)
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
    }

    public var fastBoneModel: FastBoneModel {
        FastBoneModel(bone: hydroxyapatite.rawCoefficients, soft: softTissue.rawCoefficients, fat: fatFraction.rawCoefficients)
    }

    /// True when every model has as many coefficients as it has terms (a calibration file
    /// from elsewhere may not).
    public var isWellFormed: Bool {
        func ok(_ m: LinearModel, _ n: Int) -> Bool {
            m.coefficients.count == n && m.means.count == n && m.scales.count == n && m.coefficients.allSatisfy(\.isFinite)
        }
        return ok(hydroxyapatite, 12) && ok(softTissue, 14) && ok(fatFraction, 6)
    }

    /// Fat fraction of a bone-free pixel.
    public func fatFraction(lLow u: Double, lHigh v: Double) -> Double {
        fatFraction.evaluate(Self.fatTerms(u / v, v))
    }
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

/// Measures a calibration phantom's cells in a scan: mean attenuations over each cell's
/// interior (a margin away from its edges), and each cell's soft-tissue ratio from the cell
/// of the same lean and fat without bone.
/// A cell may be measured in several scans: thin cells in a short exposure that does not
/// saturate, thick ones in a long one that brings enough photons through. Transmissions are
/// pooled weighted by exposure (Σ counts / Σ expected air counts), so each pixel counts by the
/// photons it saw.
public enum CalibrationMeasurement {
    struct CellExposure: Hashable {
        var cell: Int
        var exposure: Double
    }

    public static func points(lines: [AttenuationLine], geometry: ScanGeometry, phantom: Phantom,
                              marginUm: Double = 1_500) throws(DecompositionError) -> [CalibrationPoint] {
        guard let cells = phantom.cells, !cells.isEmpty else { throw .calibrationRangeMissing("any cells (the phantom lists none)") }
        var sums = [(u: Double, v: Double, n: Int, e: Double, varU: Double, varV: Double)](repeating: (0, 0, 0, 0, 0, 0), count: cells.count)
        let noise = lines.allSatisfy { $0.transmissionVarianceLow.count == $0.channels && $0.transmissionVarianceHigh.count == $0.channels }
        // A cell is measured in a scan only if none of its pixels saturated there: leaving out
        // just the saturated pixels would keep those whose noise went down, and bias the cell.
        var saturatedIn = Set<CellExposure>()
        for line in lines {
            let y = Double(line.yUm)
            for (k, cell) in cells.enumerated() where cell.yUm.count == 2 && cell.xUm.count == 2 {
                let y0 = Double(min(cell.yUm[0], cell.yUm[1])) + marginUm, y1 = Double(max(cell.yUm[0], cell.yUm[1])) - marginUm
                guard y >= y0 && y < y1 else { continue }
                let x0 = Double(min(cell.xUm[0], cell.xUm[1])) + marginUm, x1 = Double(max(cell.xUm[0], cell.xUm[1])) - marginUm
                for c in 0..<line.channels where line.flags[c].contains(.saturated) {
                    let x = geometry.x(ofChannel: c, carriageX: line.xUm)
                    if x >= x0 && x < x1 { saturatedIn.insert(CellExposure(cell: k, exposure: line.exposure)) }
                }
            }
        }
        for line in lines where line.transmissionLow.count == line.channels && line.transmissionHigh.count == line.channels {
            let y = Double(line.yUm)
            for (k, cell) in cells.enumerated() where cell.yUm.count == 2 && cell.xUm.count == 2 {
                guard !saturatedIn.contains(CellExposure(cell: k, exposure: line.exposure)) else { continue }
                let y0 = Double(min(cell.yUm[0], cell.yUm[1])) + marginUm, y1 = Double(max(cell.yUm[0], cell.yUm[1])) - marginUm
                guard y >= y0 && y < y1 else { continue }
                let x0 = Double(min(cell.xUm[0], cell.xUm[1])) + marginUm, x1 = Double(max(cell.xUm[0], cell.xUm[1])) - marginUm
                // Average transmissions (photon-starved pixels included), then take the log.
                let e = line.exposure
                for c in 0..<line.channels where !line.flags[c].contains(.saturated) && !line.flags[c].contains(.noBeam) {
                    let x = geometry.x(ofChannel: c, carriageX: line.xUm)
                    if x >= x0 && x < x1 && line.transmissionLow[c].isFinite && line.transmissionHigh[c].isFinite {
                        sums[k].u += e * line.transmissionLow[c]; sums[k].v += e * line.transmissionHigh[c]
                        sums[k].n += 1; sums[k].e += e
                        if noise {
                            sums[k].varU += e * e * line.transmissionVarianceLow[c]
                            sums[k].varV += e * e * line.transmissionVarianceHigh[c]
                        }
                    }
                }
            }
        }
        func logs(_ k: Int) -> (Double, Double)? {
            let e = sums[k].e
            guard e > 0, sums[k].u > 0, sums[k].v > 0 else { return nil }
            return (-Foundation.log(sums[k].u / e), -Foundation.log(sums[k].v / e))
        }
        var softRatio: [String: Double] = [:]
        for (k, cell) in cells.enumerated() where cell.hydroxyapatite == 0 {
            if let (u, v) = logs(k), v > 0 { softRatio["\(cell.lean)/\(cell.fat)"] = u / v }
        }
        return cells.enumerated().compactMap { k, cell in
            guard let (u, v) = logs(k), let r = softRatio["\(cell.lean)/\(cell.fat)"] else { return nil }
            // ln of a pooled transmission: variance Σe²·var(T) / (Σe·T)².
            let s = sums[k]
            return CalibrationPoint(lLow: u, lHigh: v, softRatio: r, hydroxyapatite: cell.hydroxyapatite,
                                    lean: cell.lean, fat: cell.fat, pixels: s.n, exposure: s.e,
                                    varianceLow: s.varU / (s.u * s.u), varianceHigh: s.varV / (s.v * s.v))
        }
    }
}
