import DXProtocol
import Foundation

extension PreparedAttenuation {
    /// A single-energy line (ICD §3, CONFIGURE_SCAN mode 2 SINGLE, the high window only, low samples 0) as log
    /// attenuations: the high window's as `process` makes it (dark, the rate loss undone, I₀ at
    /// the line's exposure, the log's bias, the channel's response), the low window NaN. No
    /// scatter is taken off: the thickness its sources need comes from both windows.
    public func processHigh(_ line: ScanLine) throws(DecompositionError) -> AttenuationLine {
        let n = line.channels
        guard n == channels, line.samples.count == 2 * n else { throw .channelMismatch(expected: channels, got: n) }
        var high = [Double](repeating: .nan, count: n), variance = high
        var flags = [PixelFlags](repeating: [], count: n)
        let beam: PixelFlags = line.flags.contains(.xrayOn) ? [] : .noBeam
        for c in 0..<n {
            var f = beam
            let sample = line.samples[2 * c + 1]
            let recorded = Double(sample) - darkHigh[c]
            var counts = recorded
            if deadTimeFraction > 0 && counts > 0 { counts = CountRate.trueCounts(low: 0, high: counts, a: deadTimeFraction).high }
            if sample == 65535 { f.insert(.saturated) }
            if recorded < floorHigh[c] || counts <= 0 {
                f.insert(.belowDark)
            } else if recorded < Self.minimumPhotons {
                f.insert(.photonStarved)
            }
            if f.isDisjoint(with: .unmeasured) {
                // As `process`: ln N is biased low by about 1/(2N).
                let v = (recorded + 1) / (recorded * recorded)
                high[c] = (lnI0High[c] - FastLog.ln(counts) - v / 2) * scaleHigh[c]
                variance[c] = v * scaleHigh[c] * scaleHigh[c]
            }
            flags[c] = f
        }
        let none = [Double](repeating: .nan, count: n)
        return AttenuationLine(index: line.index, yUm: line.yUm, xUm: line.xUm, low: none, high: high, transmissionLow: [], transmissionHigh: [],
                               transmissionVarianceLow: [], transmissionVarianceHigh: [], varianceLow: none, varianceHigh: variance,
                               flags: flags, exposure: exposure)
    }
}

/// A single-energy scan as a bone image: the lateral spine for VFA may be scanned in the high
/// window alone (less dose, no bone mineral density). One window cannot tell bone from soft
/// tissue in a pixel; across the image it can, the way a reader does: the soft tissue changes
/// slowly along the scan and the bones stand on it. So the soft tissue's attenuation is the
/// image's lower envelope, a morphological opening over a rectangle narrow across the table
/// (`openingMM`, where the soft tissue changes: the skin's edge, the lungs in front of the
/// thoracic bodies) and tall along the scan (`openingHeightMM`: two bodies with their discs,
/// so that each column of it crosses a disc space, where a column has no bone, even where one
/// disc is narrow or tilted, and a rib sloping across the field leaves most of its lines),
/// smoothed; what stands above it, divided by the high window's attenuation
/// per g/cm² of hydroxyapatite measured on the calibration phantom's cells (`perBone`), is bone
/// mineral-equivalent: an image to find and measure vertebral bodies in, not a density to
/// diagnose from (its scale rests on the soft tissue's envelope). Line by line (`decompose`,
/// for the live image) the envelope is the line's own, across it only; the whole image
/// (`image`) takes the rectangle. docs/analysis.md ("Single-energy lateral scans").
public struct SingleEnergyDecomposer: Sendable {
    /// The high window's log attenuation per g/cm² of hydroxyapatite and of soft tissue (the
    /// mean of lean and fat), over the calibration phantom's cells.
    public let perBone: Double
    public let perSoft: Double
    /// Across: enough pixels to average the noise of the envelope's least value, narrow beside
    /// the soft tissue's changes across the field. Along: two of the tallest bodies (about
    /// 30 mm) with their discs. Chosen between a 60 × 40 mm rectangle (wider than any body,
    /// the first version) and three narrow-and-tall ones on 20 of the study's patients, and
    /// measured on 50 others (docs/analysis.md).
    public static let openingMM = 10.0
    public static let openingHeightMM = 60.0
    /// The line-by-line image's envelope (`decompose`, the live view): across the line only, so
    /// wider than any body.
    public static let lineOpeningMM = 60.0
    let halfWidth: Int

    /// Nil when the calibration's cells do not give a positive coefficient for both (fewer than
    /// four cells, or no spread of bone among them).
    public init?(calibration: Calibration, pitchUm: Int) {
        guard let k = Self.coefficients(calibration.points), k.bone > 0, k.soft > 0 else { return nil }
        perBone = k.bone
        perSoft = k.soft
        halfWidth = max(1, Int((Self.lineOpeningMM * 1000 / Double(max(pitchUm, 1)) / 2).rounded()))
    }

    /// L_high ≈ a + b·HA + s·(lean + fat) by least squares over the cells.
    static func coefficients(_ points: [CalibrationPoint]) -> (bone: Double, soft: Double)? {
        guard points.count >= 4 else { return nil }
        var m = [[Double]](repeating: [0, 0, 0], count: 3), v = [0.0, 0, 0]
        for p in points where p.lHigh.isFinite {
            let x = [1, p.hydroxyapatite, p.lean + p.fat]
            for i in 0..<3 {
                v[i] += x[i] * p.lHigh
                for j in 0..<3 { m[i][j] += x[i] * x[j] }
            }
        }
        guard let solution = Self.solve3(m, v) else { return nil }
        return (solution[1], solution[2])
    }

    /// Cramer's rule for 3 × 3; nil when the system is singular.
    static func solve3(_ m: [[Double]], _ v: [Double]) -> [Double]? {
        func det(_ a: [[Double]]) -> Double {
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        }
        let d = det(m)
        guard abs(d) > 1e-12 * max(1, abs(m[0][0] * m[1][1] * m[2][2])) else { return nil }
        return (0..<3).map { k in det(m.indices.map { i in (0..<3).map { j in j == k ? v[i] : m[i][j] } }) / d }
    }

    /// The bone image of a whole scan from its high window's log attenuations (`high`, row by
    /// row, NaN where a pixel has no number or its line never arrived) and their variances:
    /// the envelope over the rectangle, then the bone and soft-tissue planes of `scan`.
    public func image(high: [Double], variance: [Double], into scan: inout DecomposedScan) {
        let g = scan.geometry, columns = g.channels, rows = g.lines
        guard columns > 0, rows > 0, high.count == columns * rows, variance.count == high.count else { return }
        let across = max(1, Int((Self.openingMM / g.pitchMM / 2).rounded())), along = max(1, Int((Self.openingHeightMM / abs(g.lineStepMM) / 2).rounded()))
        // Erosion then dilation over the rectangle, each separable: across the rows, then along
        // the columns.
        func extreme(_ v: [Double], minimum: Bool) -> [Double] {
            var rowsDone = v
            Self.slide(&rowsDone, count: rows, length: columns, stride: 1, step: columns, halfWidth: across, minimum: minimum)
            Self.slide(&rowsDone, count: columns, length: rows, stride: columns, step: 1, halfWidth: along, minimum: minimum)
            return rowsDone
        }
        // On the image smoothed over 3 × 3 pixels: the erosion takes the least of hundreds of
        // pixels, which on single pixels lies about 3σ below the soft tissue (a grey veil over
        // the image, measured); on means of 9, a third of that. More smoothing would carry the
        // endplates into a narrow disc's least value.
        var smoothed = high
        Self.mean(&smoothed, count: rows, length: columns, stride: 1, step: columns, halfWidth: 1)
        Self.mean(&smoothed, count: columns, length: rows, stride: columns, step: 1, halfWidth: 1)
        let envelope = extreme(extreme(smoothed, minimum: true), minimum: false)
        // Smoothed over half the rectangle, measured pixels only.
        var base = envelope
        Self.mean(&base, count: rows, length: columns, stride: 1, step: columns, halfWidth: max(1, across / 2))
        Self.mean(&base, count: columns, length: rows, stride: columns, step: 1, halfWidth: max(1, along / 2))
        for i in 0..<high.count {
            guard high[i].isFinite, base[i].isFinite else {
                scan.bone[i] = .nan; scan.softTissue[i] = .nan
                scan.marks[i].remove(.bone)
                continue
            }
            let bone = (high[i] - base[i]) / perBone
            scan.bone[i] = Float(bone)
            scan.softTissue[i] = Float(base[i] / perSoft)
            if bone > 3 * variance[i].squareRoot() / perBone { scan.marks[i].insert(.bone) } else { scan.marks[i].remove(.bone) }
        }
    }

    /// Sliding minimum or maximum (`Decomposer.slidingExtreme`) along `count` runs of `length`
    /// values, run k starting at k·`step` with `stride` between its values.
    static func slide(_ v: inout [Double], count: Int, length: Int, stride: Int, step: Int, halfWidth: Int, minimum: Bool) {
        var run = [Double](repeating: .nan, count: length), out = run
        var queue = [Int](repeating: 0, count: length)
        for k in 0..<count {
            for j in 0..<length { run[j] = v[k * step + j * stride] }
            run.withUnsafeBufferPointer { r in
                queue.withUnsafeMutableBufferPointer { q in
                    out.withUnsafeMutableBufferPointer { o in
                        guard let rp = r.baseAddress, let qp = q.baseAddress, let op = o.baseAddress else { return }
                        Decomposer.slidingExtreme(rp, length, halfWidth: halfWidth, minimum: minimum, queue: qp, into: op)
                    }
                }
            }
            for j in 0..<length { v[k * step + j * stride] = out[j] }
        }
    }

    /// Running mean of the finite values (`Decomposer.smooth`) along the same runs.
    static func mean(_ v: inout [Double], count: Int, length: Int, stride: Int, step: Int, halfWidth: Int) {
        var run = [Double](repeating: .nan, count: length), out = run
        var mask = [Bool](repeating: false, count: length)
        for k in 0..<count {
            for j in 0..<length { run[j] = v[k * step + j * stride]; mask[j] = run[j].isFinite }
            run.withUnsafeBufferPointer { r in
                mask.withUnsafeBufferPointer { m in
                    out.withUnsafeMutableBufferPointer { o in
                        guard let rp = r.baseAddress, let mp = m.baseAddress, let op = o.baseAddress else { return }
                        Decomposer.smooth(rp, mp, length, halfWidth: halfWidth, into: op)
                    }
                }
            }
            for j in 0..<length { v[k * step + j * stride] = out[j] }
        }
    }

    public func decompose(_ a: AttenuationLine) -> DecomposedLine {
        let n = a.high.count
        var eroded = [Double](repeating: .nan, count: n), opened = eroded, base = eroded
        var queue = [Int](repeating: 0, count: n)
        let measured = a.high.map(\.isFinite)
        a.high.withUnsafeBufferPointer { v in
            queue.withUnsafeMutableBufferPointer { q in
                eroded.withUnsafeMutableBufferPointer { e in
                    guard let vp = v.baseAddress, let qp = q.baseAddress, let ep = e.baseAddress else { return }
                    Decomposer.slidingExtreme(vp, n, halfWidth: halfWidth, minimum: true, queue: qp, into: ep)
                }
            }
        }
        eroded.withUnsafeBufferPointer { e in
            queue.withUnsafeMutableBufferPointer { q in
                opened.withUnsafeMutableBufferPointer { o in
                    guard let ep = e.baseAddress, let qp = q.baseAddress, let op = o.baseAddress else { return }
                    Decomposer.slidingExtreme(ep, n, halfWidth: halfWidth, minimum: false, queue: qp, into: op)
                }
            }
        }
        let openedMeasured = opened.map(\.isFinite)
        opened.withUnsafeBufferPointer { o in
            openedMeasured.withUnsafeBufferPointer { mask in
                base.withUnsafeMutableBufferPointer { b in
                    guard let op = o.baseAddress, let mp = mask.baseAddress, let bp = b.baseAddress else { return }
                    Decomposer.smooth(op, mp, n, halfWidth: max(1, halfWidth / 2), into: bp)
                }
            }
        }
        var bone = [Double](repeating: .nan, count: n), soft = bone, isBone = [Bool](repeating: false, count: n)
        for c in 0..<n where measured[c] && base[c].isFinite {
            bone[c] = (a.high[c] - base[c]) / perBone
            soft[c] = base[c] / perSoft
            // Bone where it stands three of its own noise above the envelope.
            isBone[c] = bone[c] > 3 * a.varianceHigh[c].squareRoot() / perBone
        }
        return DecomposedLine(index: a.index, yUm: a.yUm, xUm: a.xUm, bone: bone, soft: soft,
                              fatFraction: [Double](repeating: .nan, count: n), isBone: isBone, flags: a.flags)
    }
}
