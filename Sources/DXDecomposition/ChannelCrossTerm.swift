import Foundation

/// Each channel's low window as a mixture of the two windows' logs, and of its own log's square.
///
/// A channel's thresholds (their trims) and its angle in the fan (the heel effect) shift the
/// mean energy of its windows: its low window then reads a log attenuation between the detector's
/// mean low and high ones, not a multiple of the mean low one, and the error of a scale alone
/// changes sign between soft tissue and bone (an outside analysis of the second model: after
/// the scale, channels whose low window ends a keV early read −0.0042 on tissue and +0.0053 on
/// 2 g/cm² of bone, those ending a keV late +0.0030 and −0.0039; they do not cancel between an
/// ROI's channels and the channels its soft-tissue reference is read from, and the ESP's L1
/// read up to 1.2 % low on seeds 60–79, noise-free). The response of channel c's low window is
/// therefore k_c·L_low + b_c·L_high (b_c = 0: the scale alone), the high window keeping its
/// scale; and + q_c·L_low² where the cells ask for that too over the cross term (2026-12-07: the
/// heel effect and the trims bend a channel's response; docs/physics.md, "The low window's
/// square per channel").
///
/// Measured on the calibration cells with the cells' values in one weighted least-squares
/// problem (alternating between the two converges slowly along the direction that moves every
/// b_c and the cells' values together): the cells' values eliminated (each appears in its own
/// cell's residuals only), the channels' (k_c, b_c) solved with the mean k held at 1 and the
/// mean b at 0, so the detector's mean response stays the reference, as with the scales. Kept
/// only where the cells ask for it: an F test at 99 % of the weighted residual with and without
/// the b_c (M − 1 more parameters for M channels), then the same for the q_c (their mean held
/// at 0); a detector whose channels differ only in gain (the first physics model) keeps the
/// scales alone and the attenuation stage's fast path.
extension CalibrationMeasurement {
    /// The fewest cells a channel must have seen to take part: two parameters and eight cells
    /// leave it six degrees of freedom, three (with the square) five (the outside analysis
    /// found the same floor for the shapes' estimate); the service procedure's channels see
    /// 4–30, all but the outermost dozen at least 8, those under a patient's spine 17–30.
    static let crossTermCells = 8

    /// One channel's view of one cell: its raw logs, their variances, and the weight of its
    /// low window (the photons it can be expected to hold).
    struct View {
        var channel: Int
        var u: Double, v: Double
        var varU: Double, varV: Double
        var weight: Double
    }

    /// A window's response of each channel in `channels` and the cells' values under it: the
    /// channel's map onto the detector's mean, k·L + b·L' + q·L² (L its own log, L' the other
    /// window's), with as many of those terms as were fitted (`terms`: 1 the scale alone, 2 with
    /// the cross term, 3 with the square).
    struct WindowResponse {
        var terms: Int
        /// The largest own log among the views (the thickest cell's): how far the map was seen.
        var largestLog: Double
        var scale: [Int: Double]
        var cross: [Int: Double]
        var square: [Int: Double]
        var values: [Double]
        var variances: [Double]
        var rss: Double
        var views: Int
        var unknowns: Int
    }

    /// The channels' maps fitted jointly with the cells' values, with the first `terms` of
    /// (L, L', L²). `View.u` is the window's own log, `View.v` the other window's. Nil where the
    /// system is singular.
    static func windowResponse(_ cells: [[View]], channels: [Int], terms: Int) -> WindowResponse? {
        let m = channels.count, q = terms
        guard m >= 2, (1...3).contains(q) else { return nil }
        var position = [Int: Int]()
        for (j, c) in channels.enumerated() { position[c] = j }
        // The square less its noise's share (E[L²] = L² + var L), as the attenuation stage takes
        // it of every pixel.
        func features(_ x: View) -> [Double] { [x.u, x.v, x.u * x.u - x.varU] }
        let p = q * m, size = p + q
        // The normal equations with the cells' values eliminated (their Schur complement),
        // bordered by the constraints: [S Cᵀ; C 0]·[θ; λ] = [0; d].
        var a = [Double](repeating: 0, count: size * (size + 1))
        let row = size + 1
        var views = 0, used = 0
        for cell in cells {
            let mine = cell.filter { position[$0.channel] != nil && $0.weight > 0 && $0.u.isFinite && $0.v.isFinite }
            guard !mine.isEmpty else { continue }
            used += 1
            views += mine.count
            let total = mine.reduce(0) { $0 + $1.weight }
            // g: the cell's value's coupling to each of its channels' parameters.
            var index: [Int] = [], g: [Double] = []
            for x in mine {
                guard let j = position[x.channel] else { continue }
                let w = x.weight, f = features(x)
                for r in 0..<q {
                    for s in 0..<q { a[(q * j + r) * row + q * j + s] += w * f[r] * f[s] }
                    index.append(q * j + r); g.append(w * f[r])
                }
            }
            for (r, gr) in zip(index, g) {
                for (s, gs) in zip(index, g) { a[r * row + s] -= gr * gs / total }
            }
        }
        for i in 0..<p { a[i * row + i] += 1e-12 }
        for i in 0..<q {
            for j in 0..<m {
                a[(p + i) * row + q * j + i] = 1
                a[(q * j + i) * row + p + i] = 1
            }
            a[(p + i) * row + size] = i == 0 ? Double(m) : 0
        }
        guard let theta = Self.solveDense(&a, size) else { return nil }
        var scale = [Int: Double](), crossTerm = [Int: Double](), squareTerm = [Int: Double]()
        for (j, c) in channels.enumerated() {
            scale[c] = theta[q * j]
            crossTerm[c] = q > 1 ? theta[q * j + 1] : 0
            squareTerm[c] = q > 2 ? theta[q * j + 2] : 0
        }
        var values = [Double](repeating: .nan, count: cells.count), variances = values
        var rss = 0.0
        for (k, cell) in cells.enumerated() {
            var sum = 0.0, total = 0.0, noise = 0.0
            var mapped: [(Double, Double)] = []
            for x in cell {
                guard let kc = scale[x.channel], let bc = crossTerm[x.channel], let qc = squareTerm[x.channel],
                      x.weight > 0, x.u.isFinite, x.v.isFinite else { continue }
                let y = kc * x.u + bc * x.v + qc * (x.u * x.u - x.varU)
                let slope = kc + 2 * qc * x.u
                sum += x.weight * y; total += x.weight
                noise += x.weight * x.weight * (slope * slope * x.varU + bc * bc * x.varV)
                mapped.append((y, x.weight))
            }
            guard total > 0 else { continue }
            values[k] = sum / total
            variances[k] = noise / (total * total)
            for (y, w) in mapped { rss += w * (y - values[k]) * (y - values[k]) }
        }
        guard rss.isFinite, theta.allSatisfy(\.isFinite) else { return nil }
        let largest = cells.joined().filter { position[$0.channel] != nil && $0.weight > 0 && $0.u.isFinite }.map(\.u).max() ?? 0
        return WindowResponse(terms: q, largestLog: largest, scale: scale, cross: crossTerm, square: squareTerm, values: values,
                              variances: variances, rss: rss, views: views, unknowns: p - q + used)
    }

    /// The largest departure of a channel's map from the detector's mean that is taken as a
    /// channel's response: a scale k between ½ and 2, a cross term |b| ≤ ½ and a square
    /// |q| ≤ 0.02 (2 % of the scale at a log of 1, a fifth of it at 10, the thickest cells'),
    /// and no more than keeps the map's slope k + 2q·L within half of k up to twice the
    /// thickest cell's log (patients beyond the phantom take the square extrapolated). A
    /// threshold trimmed a keV off or the heel's few degrees move them by a few hundredths (the
    /// second model's detector: k 0.99–1.01 with scales alone); a map beyond these is not a
    /// channel's energy response but something the channel's cells carry that it cannot
    /// describe (on the whole second model, pile-up and scatter not fully undone, channel 116
    /// came out k ≈ 0, b = 1.6), and the smaller map is kept.
    static let plausibleScale = 0.5...2.0
    static let plausibleCross = 0.5
    static let plausibleSquare = 0.02

    static func plausible(_ r: WindowResponse) -> Bool {
        r.scale.values.allSatisfy { plausibleScale.contains($0) } && r.cross.values.allSatisfy { abs($0) <= plausibleCross }
            && r.square.values.allSatisfy { abs($0) <= plausibleSquare }
            && r.square.allSatisfy { c, q in abs(2 * q * 2 * r.largestLog) <= 0.5 * (r.scale[c] ?? 0) }
    }

    /// A window's response with each further term where an F test at 99 % asks for it (the
    /// cross term over the scales alone, then the square over the cross term) and every
    /// channel's map is plausible; nil where even the cross term is not asked for (the scales
    /// alone).
    static func responseIfNeeded(_ cells: [[View]], channels: [Int]) -> WindowResponse? {
        guard var kept = windowResponse(cells, channels: channels, terms: 1) else { return nil }
        for terms in 2...3 {
            guard let more = windowResponse(cells, channels: channels, terms: terms), plausible(more) else { break }
            let extra = channels.count - 1, dof = more.views - more.unknowns
            guard extra > 0, dof > 0, more.rss > 0, more.rss < kept.rss else { break }
            let F = ((kept.rss - more.rss) / Double(extra)) / (more.rss / Double(dof))
            guard F > Calibration.fQuantile99(extra, dof) else { break }
            kept = more
        }
        return kept.terms > 1 ? kept : nil
    }

    /// Gaussian elimination with partial pivoting of the n × (n + 1) augmented matrix `a`
    /// (row-major); nil where a pivot vanishes.
    static func solveDense(_ a: inout [Double], _ n: Int) -> [Double]? {
        let row = n + 1
        return a.withUnsafeMutableBufferPointer { m -> [Double]? in
            for col in 0..<n {
                var pivot = col, largest = abs(m[col * row + col])
                for r in (col + 1)..<max(n, col + 1) where abs(m[r * row + col]) > largest { pivot = r; largest = abs(m[r * row + col]) }
                guard largest > 1e-300 else { return nil }
                if pivot != col { for k in 0..<row { m.swapAt(col * row + k, pivot * row + k) } }
                let d = m[col * row + col]
                for r in (col + 1)..<max(n, col + 1) {
                    let f = m[r * row + col] / d
                    if f != 0 { for k in col..<row { m[r * row + k] -= f * m[col * row + k] } }
                }
            }
            var x = [Double](repeating: 0, count: n)
            for r in stride(from: n - 1, through: 0, by: -1) {
                var s = m[r * row + n]
                for k in (r + 1)..<max(n, r + 1) { s -= m[r * row + k] * x[k] }
                x[r] = s / m[r * row + r]
            }
            return x
        }
    }
}
