import DXProtocol
import Foundation

/// Scatter in the fan, measured beside the calibration phantom and taken off every line.
///
/// A photon scattered once in the body leaves the fan's plane or stays in it; what stays
/// reaches other channels of the same line (the fan is 1 mm high, so nothing from other lines
/// arrives). Single scatter along a ray crossing an areal density m is ∝ μ_s m e^{−μm}, the
/// primary that gets through times the thickness crossed (Johns & Cunningham, *The Physics of
/// Radiology*, 4th ed., ch. 6), spread across the detector by a kernel: the scatter-kernel
/// superposition used for scatter correction in projection imaging (Ohnesorge et al., Med Phys
/// 26 (1999) 1053; Sun & Star-Lack, Phys Med Biol 55 (2010) 6695). Here, per window w and
/// channel c,
///
///     S_w(c) = a_w Σ_j G_σ(x_c − x_j) t_j I_w(j),   t_j = ln(I₀,high(j) / I_high(j)),
///
/// with I the counts the channel recorded (rate loss undone), t the high window's log
/// attenuation as the thickness crossed, and G a normalised Gaussian of width σ. The shape
/// is assumed; a_low, a_high and σ are measured (`measure`): in the calibration's passes at
/// the air reference's own exposure, channels beside the phantom see air plus the phantom's
/// scatter, and their excess over the air reference is that scatter alone (the edge-spread
/// method). A detector without scatter measures amplitudes indistinguishable from 0 and gets
/// no model. docs/physics.md ("Scatter, measured and taken off").
public struct ScatterModel: Sendable, Equatable, Codable {
    public var amplitudeLow: Double
    public var amplitudeHigh: Double
    /// The kernel's standard deviation across the detector (µm), and the channel pitch it was
    /// measured with.
    public var widthUm: Double
    public var pitchUm: Double
    /// What the measurement rests on: air pixels beside the phantom, and the amplitudes'
    /// standard errors.
    public var airPixels: Int
    public var standardErrorLow: Double
    public var standardErrorHigh: Double
    /// The thickness crossed, as the scatter sees it, from the two windows' log attenuations:
    /// t = α·L_low + β·L_high (`ScatterThickness`). Nil in calibrations made before it was
    /// measured (2026-12-05), which took t = L_high.
    public var thickness: ScatterThickness?

    /// The kernel as a matrix over `channels` (row c: what each channel j sends to c).
    func kernel(channels n: Int) -> [Double] {
        Self.kernel(channels: n, widthChannels: widthUm / max(pitchUm, 1))
    }

    static func kernel(channels n: Int, widthChannels s: Double) -> [Double] {
        var k = [Double](repeating: 0, count: n * n)
        let norm = 1 / (s * (2 * Double.pi).squareRoot())
        for c in 0..<n {
            for j in 0..<n {
                let d = Double(c - j) / s
                k[c * n + j] = norm * exp(-0.5 * d * d)
            }
        }
        return k
    }

    /// Each channel's scatter source t·I from one line's counts (0 where a channel holds no
    /// count: unmeasured ones hold no photons; a saturated one's count is unknown, which in a
    /// patient scan means air or nearly, and in a calibration pass is filled from a pass of
    /// less exposure: `CalibrationFit`).
    static func sources(low: [Double], high: [Double], valid: [Bool], lnI0Low: [Double], lnI0High: [Double],
                        thickness: ScatterThickness) -> (low: [Double], high: [Double]) {
        let n = low.count
        var sL = [Double](repeating: 0, count: n), sH = sL
        for j in 0..<n where valid[j] && high[j] > 0 && low[j] > 0 {
            // Not held at 0: t is a linear estimate, and over air its noise averages to 0
            // only when both signs are kept (held at 0, 70 air channels sent about 5 % of
            // the cells' scatter on the second model).
            let t = thickness.fromLow * (lnI0Low[j] - log(low[j])) + thickness.fromHigh * (lnI0High[j] - log(high[j]))
            sL[j] = t * low[j]
            sH[j] = t * high[j]
        }
        return (sL, sH)
    }

    /// What each channel receives from the sources through `kernel` (n × n), per window.
    static func received(kernel: [Double], amplitudeLow: Double, amplitudeHigh: Double,
                         low sL: [Double], high sH: [Double]) -> (low: [Double], high: [Double]) {
        let n = sL.count
        var outL = [Double](repeating: 0, count: n), outH = outL
        guard kernel.count == n * n, sH.count == n else { return (outL, outH) }
        kernel.withUnsafeBufferPointer { k in sL.withUnsafeBufferPointer { sL in sH.withUnsafeBufferPointer { sH in
            for c in 0..<n {
                var l = 0.0, h = 0.0
                let row = c * n
                for j in 0..<n { l += k[row + j] * sL[j]; h += k[row + j] * sH[j] }
                outL[c] = amplitudeLow * l
                outH[c] = amplitudeHigh * h
            }
        } } }
        return (outL, outH)
    }

    /// The sources from the primary alone: scatter is made by the photons that got through,
    /// not by other scatter, and a channel's recorded count holds both. The scatter the
    /// recorded counts would send is taken off each count (at most 95 % of it: behind the
    /// thickest cells the first estimate can exceed the count) and the sources are computed
    /// again from what is left. One step: the second step's change is of the order of the
    /// scatter-to-primary ratio squared.
    static func primarySources(low: [Double], high: [Double], valid: [Bool], lnI0Low: [Double], lnI0High: [Double],
                               thickness: ScatterThickness, kernel: [Double], amplitudeLow: Double,
                               amplitudeHigh: Double) -> (low: [Double], high: [Double]) {
        let first = sources(low: low, high: high, valid: valid, lnI0Low: lnI0Low, lnI0High: lnI0High, thickness: thickness)
        let s = received(kernel: kernel, amplitudeLow: amplitudeLow, amplitudeHigh: amplitudeHigh, low: first.low, high: first.high)
        var pL = low, pH = high
        for j in low.indices where valid[j] {
            pL[j] = max(low[j] - s.low[j], 0.05 * low[j])
            pH[j] = max(high[j] - s.high[j], 0.05 * high[j])
        }
        return sources(low: pL, high: pH, valid: valid, lnI0Low: lnI0Low, lnI0High: lnI0High, thickness: thickness)
    }

    /// The kernel widths the air beside the phantom is searched over: from the margin (a
    /// narrower kernel leaves nothing beyond it to measure) to 120 mm, 24 steps evenly in log.
    static func searchedWidthsUm(marginUm: Double = 6_000) -> [Double] {
        (0..<24).map { marginUm * pow(120_000 / marginUm, Double($0) / 23) }
    }

    /// Measures the model from calibration lines: `trueCounts` gives each line's counts with
    /// the rate loss undone, the validity of each channel and the expected air counts at the
    /// line's exposure. Air channels are those at least `marginUm` outside every cell the line
    /// crosses. Two rounds: the second takes the sources from the primary alone, with the
    /// first round's kernel. Nil when fewer than 200 air pixels were seen or the amplitude is
    /// not four of its standard errors above 0.
    static func measure(lines: [(line: ScanLine, pass: Int)],
                        trueCounts: (ScanLine, Int) -> (low: [Double], high: [Double], valid: [Bool], airLow: [Double], airHigh: [Double])?,
                        geometry: ScanGeometry, phantom: Phantom, thickness: ScatterThickness,
                        marginUm: Double = 6_000) -> ScatterModel? {
        guard let cells = phantom.cells, !cells.isEmpty, geometry.channels > 0 else { return nil }
        let n = geometry.channels
        let widths = Self.searchedWidthsUm(marginUm: marginUm)
        // Each width's kernel by distance in channels (the matrix's rows are shifts of one
        // profile): 24 profiles of n values, not 24 matrices of n² (50 MB at 512 channels).
        let profiles = widths.map { w in
            let s = w / Double(geometry.pitchUm), norm = 1 / (s * (2 * Double.pi).squareRoot())
            return (0..<n).map { d in let x = Double(d) / s; return norm * exp(-0.5 * x * x) }
        }
        struct Sums { var f = 0.0, e = 0.0, fe = 0.0, ff = 0.0, ee = 0.0, n = 0.0 }
        struct Fit { var sse: Double, width: Int, a: Double, se: Double }
        // One round over the lines: each air channel's excess against what each kernel width
        // predicts from the line's sources (`primaryFrom`: a first fit whose scatter is taken
        // off the sources' counts, `primarySources`), then the best width.
        func round(primaryFrom first: Fit?) -> (fit: Fit?, airPixels: Int) {
            // The first round's kernel as a matrix, for its sources (`primarySources`).
            let firstKernel = first.map { kernel(channels: n, widthChannels: widths[$0.width] / Double(geometry.pitchUm)) }
            // [width][pass][window]
            var sums: [[Int: [Sums]]] = Array(repeating: [:], count: widths.count)
            var airPixels = 0
            for (line, pass) in lines {
                guard let counts = trueCounts(line, pass), counts.low.count == n, counts.high.count == n, counts.valid.count == n,
                      counts.airLow.count == n, counts.airHigh.count == n else { continue }
                let y = Double(line.yUm)
                let crossed = cells.filter { $0.yUm.count == 2 && $0.xUm.count == 2 && y >= Double(min($0.yUm[0], $0.yUm[1])) && y < Double(max($0.yUm[0], $0.yUm[1])) }
                guard !crossed.isEmpty else { continue }
                let air = (0..<n).filter { c in
                    let x = geometry.x(ofChannel: c, carriageX: line.xUm)
                    return counts.valid[c] && crossed.allSatisfy { x < Double(min($0.xUm[0], $0.xUm[1])) - marginUm || x > Double(max($0.xUm[0], $0.xUm[1])) + marginUm }
                }
                guard air.count >= 5 else { continue }
                airPixels += air.count
                let lnAirLow = counts.airLow.map { $0 > 0 ? log($0) : 0 }, lnAirHigh = counts.airHigh.map { $0 > 0 ? log($0) : 0 }
                let (sL, sH) = first.map {
                    primarySources(low: counts.low, high: counts.high, valid: counts.valid, lnI0Low: lnAirLow, lnI0High: lnAirHigh,
                                   thickness: thickness, kernel: firstKernel ?? [], amplitudeLow: $0.a, amplitudeHigh: $0.a)
                } ?? sources(low: counts.low, high: counts.high, valid: counts.valid, lnI0Low: lnAirLow, lnI0High: lnAirHigh, thickness: thickness)
                // Each air channel's excess over the air reference, per window.
                let excess = air.map { c in (counts.low[c] / counts.airLow[c] - 1, counts.high[c] / counts.airHigh[c] - 1) }
                for (w, k) in profiles.enumerated() {
                    var low = sums[w][pass]?[0] ?? Sums(), high = sums[w][pass]?[1] ?? Sums()
                    k.withUnsafeBufferPointer { k in sL.withUnsafeBufferPointer { sL in sH.withUnsafeBufferPointer { sH in
                        for (i, c) in air.enumerated() {
                            var fL = 0.0, fH = 0.0
                            for j in 0..<n { let kj = k[abs(c - j)]; fL += kj * sL[j]; fH += kj * sH[j] }
                            fL /= counts.airLow[c]; fH /= counts.airHigh[c]
                            let (eL, eH) = excess[i]
                            low.f += fL; low.e += eL; low.fe += fL * eL; low.ff += fL * fL; low.ee += eL * eL; low.n += 1
                            high.f += fH; high.e += eH; high.fe += fH * eH; high.ff += fH * fH; high.ee += eH * eH; high.n += 1
                        }
                    } } }
                    sums[w][pass] = [low, high]
                }
            }
            guard airPixels >= 200 else { return (nil, airPixels) }
            // Per width: each pass's own offset (the tube's output between the air reference
            // and the pass) taken out per window, then one amplitude for both windows by least
            // squares (a photon scattered at these small angles stays in its window: the
            // Compton shift at 60 keV and 10° is 0.1 keV); the width that leaves the least
            // residual.
            var best: Fit?
            for w in widths.indices {
                var sfe = 0.0, sff = 0.0, see = 0.0, count = 0.0, offsets = 0.0
                // In the passes' order: summed in a dictionary's order (which Swift seeds
                // afresh in every process) the amplitude's last bit varied between runs, and the
                // calibration fitted on it by up to 1 % in residual (seed 64 of the second model:
                // 0.0293 or 0.0296), so the same capture calibrated differently.
                for pass in sums[w].keys.sorted() {
                    guard let s = sums[w][pass] else { continue }
                    for m in s where m.n > 1 {
                        sfe += m.fe - m.f * m.e / m.n
                        sff += m.ff - m.f * m.f / m.n
                        see += m.ee - m.e * m.e / m.n
                        count += m.n
                        offsets += 1
                    }
                }
                guard sff > 0, count > offsets + 2 else { return (nil, airPixels) }
                let amplitude = sfe / sff
                let residual = max(see - sfe * sfe / sff, 0)
                let se = (residual / (count - offsets - 2) / sff).squareRoot()
                if best == nil || residual < best?.sse ?? .infinity { best = Fit(sse: residual, width: w, a: amplitude, se: se) }
            }
            return (best, airPixels)
        }
        // The first round's sources hold the scatter too; the second's only the primary.
        let first = round(primaryFrom: nil)
        guard let firstFit = first.fit, firstFit.a > 0 else { return nil }
        let (second, airPixels) = round(primaryFrom: firstFit)
        // Four standard errors: the width is searched over 24 values, so three would let noise
        // through about once in 30 calibrations of a unit without scatter.
        guard let best = second, best.a > 4 * best.se else { return nil }
        return ScatterModel(amplitudeLow: best.a, amplitudeHigh: best.a, widthUm: widths[best.width], pitchUm: Double(geometry.pitchUm),
                            airPixels: airPixels, standardErrorLow: best.se, standardErrorHigh: best.se, thickness: thickness)
    }
}

/// The thickness a ray crossed as its scatter sees it, from its two log attenuations.
///
/// Single scatter is Compton scatter on the electrons crossed (Johns & Cunningham, ch. 6), so
/// t is the electrons per cm² crossed, in grams of water holding as many: t = Σ_m (Z/A)_m m_m /
/// (Z/A)_water over the materials m crossed (g/cm²). Bone mineral holds about 10 % fewer
/// electrons per gram than soft tissue and attenuates more per gram in the high window
/// (photoabsorption in its calcium), so the high window's log attenuation alone, used until
/// 2026-12-05, counted a bone-rich ray's scatter up to 1.6 times too high (measured on the
/// second model, docs/physics.md). The two log attenuations tell soft tissue from bone,
/// so t ≈ α·L_low + β·L_high; α and β are fitted at calibration to the phantom's cells,
/// whose composition is known (`fit`). Z/A from NIST's X-ray mass attenuation coefficients,
/// table 2 (Hubbell & Seltzer, NISTIR 5632), for ICRU Report 44's compositions: water 0.55508,
/// soft tissue 0.54996, adipose tissue 0.55579; hydroxyapatite Ca₁₀(PO₄)₆(OH)₂ from its
/// formula, 500/1004.6 = 0.49771. docs/physics.md ("Scatter").
public struct ScatterThickness: Sendable, Equatable, Codable {
    public var fromLow: Double
    public var fromHigh: Double
    /// The RMS misfit of the cells' electron thickness (g/cm² of water) and how many cells.
    public var rmsMisfit: Double
    public var cells: Int

    /// The high window's log attenuation: what was used before 2026-12-05, and what is used
    /// when the cells cannot be fitted (`cells` 0).
    public static let highWindow = ScatterThickness(fromLow: 0, fromHigh: 1, rmsMisfit: 0, cells: 0)

    static let zOverAWater = 0.55508, zOverASoft = 0.54996, zOverAFat = 0.55579, zOverAMineral = 500 / 1004.6

    /// A cell's electrons per cm², in grams of water holding as many.
    static func electronThickness(hydroxyapatite: Double, lean: Double, fat: Double) -> Double {
        (zOverAMineral * hydroxyapatite + zOverASoft * lean + zOverAFat * fat) / zOverAWater
    }

    /// α and β by least squares over the cells (each cell once, unweighted: the cells span
    /// the range of tissue the scatter comes from), through 0 (air crosses nothing). The
    /// cells' attenuations still hold the scatter; it moves t by a few per cent of itself,
    /// which moves the scatter by as much of a few per cent. Nil with fewer than 3 cells.
    public static func fit(_ points: [CalibrationPoint]) -> ScatterThickness? {
        let usable = points.filter { $0.lLow.isFinite && $0.lHigh.isFinite && $0.lHigh > 0 }
        guard usable.count >= 3 else { return nil }
        var suu = 0.0, suv = 0.0, svv = 0.0, sut = 0.0, svt = 0.0
        for p in usable {
            let t = electronThickness(hydroxyapatite: p.hydroxyapatite, lean: p.lean, fat: p.fat)
            suu += p.lLow * p.lLow; suv += p.lLow * p.lHigh; svv += p.lHigh * p.lHigh
            sut += p.lLow * t; svt += p.lHigh * t
        }
        let det = suu * svv - suv * suv
        guard det > 1e-12 * suu * svv else { return nil }
        let a = (sut * svv - svt * suv) / det, b = (svt * suu - sut * suv) / det
        var sse = 0.0
        for p in usable {
            let r = a * p.lLow + b * p.lHigh - electronThickness(hydroxyapatite: p.hydroxyapatite, lean: p.lean, fat: p.fat)
            sse += r * r
        }
        return ScatterThickness(fromLow: a, fromHigh: b, rmsMisfit: (sse / Double(usable.count)).squareRoot(), cells: usable.count)
    }
}

/// One line's scatter sources t·I per channel and window (`ScatterModel`), which channels held
/// a count to compute them from, and the exposure (s·mA) they were counted at.
public struct ScatterSources: Sendable, Equatable {
    public var low: [Double]
    public var high: [Double]
    public var measured: [Bool]
    public var exposure: Double
    /// The counts (dark off, rate loss undone) the sources were computed from, so that they
    /// can be computed again from the primary alone (`ScatterModel.primarySources`); empty
    /// where not known.
    public var countsLow: [Double] = []
    public var countsHigh: [Double] = []

    /// These sources with every channel this line could not measure taken from `other`, a line
    /// at the same place and another exposure, scaled to this one's (the primary and the
    /// scatter it makes are proportional to the exposure; the thickness crossed is the same).
    public func filled(from other: ScatterSources) -> ScatterSources {
        guard other.low.count == low.count, other.exposure > 0 else { return self }
        var result = self
        let scale = exposure / other.exposure
        let counts = countsLow.count == low.count && countsHigh.count == low.count
            && other.countsLow.count == low.count && other.countsHigh.count == low.count
        for c in low.indices where !measured[c] && other.measured[c] {
            result.low[c] = other.low[c] * scale
            result.high[c] = other.high[c] * scale
            result.measured[c] = true
            if counts {
                result.countsLow[c] = other.countsLow[c] * scale
                result.countsHigh[c] = other.countsHigh[c] * scale
            }
        }
        return result
    }
}
