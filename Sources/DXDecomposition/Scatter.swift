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
    static func sources(low: UnsafeBufferPointer<Double>, high: UnsafeBufferPointer<Double>, valid: (Int) -> Bool,
                        lnI0High: UnsafeBufferPointer<Double>, into sL: UnsafeMutableBufferPointer<Double>,
                        _ sH: UnsafeMutableBufferPointer<Double>) {
        for j in 0..<sL.count {
            guard valid(j), high[j] > 0, low[j] > 0 else { sL[j] = 0; sH[j] = 0; continue }
            let t = max(0, lnI0High[j] - log(high[j]))
            sL[j] = t * low[j]
            sH[j] = t * high[j]
        }
    }

    /// Measures the model from calibration lines: `trueCounts` gives each line's counts with
    /// the rate loss undone, the validity of each channel and the expected air counts at the
    /// line's exposure. Air channels are those at least `marginUm` outside every cell the line
    /// crosses. Nil when fewer than 200 air pixels were seen or neither amplitude is three of
    /// its standard errors above 0.
    static func measure(lines: [(line: ScanLine, pass: Int)],
                        trueCounts: (ScanLine, Int) -> (low: [Double], high: [Double], valid: [Bool], airLow: [Double], airHigh: [Double])?,
                        geometry: ScanGeometry, phantom: Phantom, marginUm: Double = 6_000) -> ScatterModel? {
        guard let cells = phantom.cells, !cells.isEmpty, geometry.channels > 0 else { return nil }
        let n = geometry.channels
        // The kernel widths tried: from the margin (a narrower kernel leaves nothing beyond it
        // to measure) to 120 mm, 24 steps evenly in log.
        let widths = (0..<24).map { marginUm * pow(120_000 / marginUm, Double($0) / 23) }
        let kernels = widths.map { kernel(channels: n, widthChannels: $0 / Double(geometry.pitchUm)) }
        struct Sums { var f = 0.0, e = 0.0, fe = 0.0, ff = 0.0, ee = 0.0, n = 0.0 }
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
            var sL = [Double](repeating: 0, count: n), sH = sL
            var lnAirHigh = [Double](repeating: 0, count: n)
            for j in 0..<n { lnAirHigh[j] = counts.airHigh[j] > 0 ? log(counts.airHigh[j]) : 0 }
            counts.low.withUnsafeBufferPointer { lo in counts.high.withUnsafeBufferPointer { hi in
                lnAirHigh.withUnsafeBufferPointer { a in sL.withUnsafeMutableBufferPointer { l in sH.withUnsafeMutableBufferPointer { h in
                    sources(low: lo, high: hi, valid: { counts.valid[$0] }, lnI0High: a, into: l, h)
                } } } } }
            // Each air channel's excess over the air reference, per window.
            let excess = air.map { c in (counts.low[c] / counts.airLow[c] - 1, counts.high[c] / counts.airHigh[c] - 1) }
            for (w, k) in kernels.enumerated() {
                var low = sums[w][pass]?[0] ?? Sums(), high = sums[w][pass]?[1] ?? Sums()
                k.withUnsafeBufferPointer { k in sL.withUnsafeBufferPointer { sL in sH.withUnsafeBufferPointer { sH in
                    for (i, c) in air.enumerated() {
                        var fL = 0.0, fH = 0.0
                        let row = c * n
                        for j in 0..<n { fL += k[row + j] * sL[j]; fH += k[row + j] * sH[j] }
                        fL /= counts.airLow[c]; fH /= counts.airHigh[c]
                        let (eL, eH) = excess[i]
                        low.f += fL; low.e += eL; low.fe += fL * eL; low.ff += fL * fL; low.ee += eL * eL; low.n += 1
                        high.f += fH; high.e += eH; high.fe += fH * eH; high.ff += fH * fH; high.ee += eH * eH; high.n += 1
                    }
                } } }
                sums[w][pass] = [low, high]
            }
        }
        guard airPixels >= 200 else { return nil }
        // Per width: each pass's own offset (the tube's output between the air reference and
        // the pass) taken out per window, then one amplitude for both windows by least squares
        // (a photon scattered at these small angles stays in its window: the Compton shift at
        // 60 keV and 10° is 0.1 keV); the width that leaves the least residual.
        var best: (sse: Double, width: Double, a: Double, se: Double)?
        for (w, width) in widths.enumerated() {
            var sfe = 0.0, sff = 0.0, see = 0.0, count = 0.0, offsets = 0.0
            for s in sums[w].values {
                for m in s where m.n > 1 {
                    sfe += m.fe - m.f * m.e / m.n
                    sff += m.ff - m.f * m.f / m.n
                    see += m.ee - m.e * m.e / m.n
                    count += m.n
                    offsets += 1
                }
            }
            guard sff > 0, count > offsets + 2 else { return nil }
            let amplitude = sfe / sff
            let residual = max(see - sfe * sfe / sff, 0)
            let se = (residual / (count - offsets - 2) / sff).squareRoot()
            if best == nil || residual < best?.sse ?? .infinity { best = (residual, width, amplitude, se) }
        }
        // Four standard errors: the width is searched over 24 values, so three would let noise
        // through about once in 30 calibrations of a unit without scatter.
        guard let best, best.a > 4 * best.se else { return nil }
        return ScatterModel(amplitudeLow: best.a, amplitudeHigh: best.a, widthUm: best.width, pitchUm: Double(geometry.pitchUm),
                            airPixels: airPixels, standardErrorLow: best.se, standardErrorHigh: best.se)
    }
}

/// One line's scatter sources t·I per channel and window (`ScatterModel`), which channels held
/// a count to compute them from, and the exposure (s·mA) they were counted at.
public struct ScatterSources: Sendable, Equatable {
    public var low: [Double]
    public var high: [Double]
    public var measured: [Bool]
    public var exposure: Double

    /// These sources with every channel this line could not measure taken from `other`, a line
    /// at the same place and another exposure, scaled to this one's (the primary and the
    /// scatter it makes are proportional to the exposure; the thickness crossed is the same).
    public func filled(from other: ScatterSources) -> ScatterSources {
        guard other.low.count == low.count, other.exposure > 0 else { return self }
        var result = self
        let scale = exposure / other.exposure
        for c in low.indices where !measured[c] && other.measured[c] {
            result.low[c] = other.low[c] * scale
            result.high[c] = other.high[c] * scale
            result.measured[c] = true
        }
        return result
    }
}
