import Foundation

/// What each energy window counts, as a spectrum: the share of the window's air counts that
/// arrives at each energy, fitted to the calibration phantom's cells.
///
/// A counting detector whose response is linear in the photons reaching it (its efficiency, the
/// blur of its thresholds, K-escape and charge sharing all are; pile-up is not, and is undone
/// before: `CountRate`) has in each window a transmission
///
///     T_w(a) = Σ_k s_w,k · exp(−Σ_m μ_m(E_k)·a_m),   s_w,k ≥ 0,
///
/// for the areal densities a_m of hydroxyapatite, lean and fat, with the materials' own
/// attenuation (`MaterialAttenuation`, XCOM through xraydb, as ICD §8 allows). The weights
/// s_w,k are found from the cells by non-negative least squares over 2 keV bins (each cell's
/// transmission weighted by the inverse of its variance, the air's transmission of 1 held
/// tightly), the estimation of an X-ray spectrum from transmission measurements through known
/// materials (E. Y. Sidky et al., "A robust method of x-ray source spectrum estimation from
/// transmission measurements", J. Appl. Phys. 97 (2005) 124701; non-negativity makes it
/// stable). What the spectra are for: a model that follows the physics where the phantom has
/// no cell. A polynomial fitted to the cells alone extrapolates as polynomials do: under 30
/// g/cm² of lean, or 9 of fat, the second physics model's ESP read 1–2.5 % off where this model
/// predicts the cells within their noise (docs/physics.md, "The phantom's cells as spectra").
public struct EffectiveSpectra: Sendable, Equatable, Codable {
    /// The bins' energies (keV).
    public var energiesKeV: [Double]
    /// Each window's weight per bin (their sum is the window's transmission in air, 1).
    public var low: [Double]
    public var high: [Double]
    /// How well the spectra describe the cells: the RMS over the cells of each window's log
    /// residual in units of the cell's own photon noise (about 1 where only noise is left).
    public var residualLow: Double
    public var residualHigh: Double

    /// The bins: 2 keV apart from 16 keV (below, no photon crosses 5 g/cm² of lean) to the
    /// table's end, 150 keV (bins above the tube's voltage keep no weight).
    static let binsKeV: [Int] = Array(stride(from: 16, through: MaterialAttenuation.lastEnergyKeV, by: 2))

    /// The air's transmission of 1 is held with this many times the heaviest cell's weight.
    static let airWeight = 10.0

    /// Each window's log attenuation −ln T_w at these areal densities (g/cm²); NaN for spectra
    /// that are not well formed (a damaged calibration file).
    public func attenuations(hydroxyapatite ha: Double, lean: Double, fat: Double) -> (low: Double, high: Double) {
        guard isWellFormed else { return (.nan, .nan) }
        var tl = 0.0, th = 0.0
        for (k, e) in energiesKeV.enumerated() {
            let t = Foundation.exp(-Self.mu(e, ha, lean, fat))
            tl += low[k] * t
            th += high[k] * t
        }
        return (-Foundation.log(tl), -Foundation.log(th))
    }

    static func mu(_ energy: Double, _ ha: Double, _ lean: Double, _ fat: Double) -> Double {
        let i = Int(energy.rounded()) - MaterialAttenuation.firstEnergyKeV
        return MaterialAttenuation.hydroxyapatite[i] * ha + MaterialAttenuation.lean[i] * lean + MaterialAttenuation.fat[i] * fat
    }

    /// The spectra of the cells (bone-free and with bone alike), or nil where they cannot be
    /// found: too few cells with their noise recorded, or a window no bin fits.
    public static func fit(points: [CalibrationPoint]) -> EffectiveSpectra? {
        let cells = points.filter {
            $0.lLow.isFinite && $0.lHigh.isFinite && $0.varianceLow > 0 && $0.varianceHigh > 0 && $0.varianceLow.isFinite && $0.varianceHigh.isFinite
                && $0.hydroxyapatite.isFinite && $0.lean.isFinite && $0.fat.isFinite && $0.hydroxyapatite >= 0 && $0.lean >= 0 && $0.fat >= 0
        }
        guard cells.count >= 20 else { return nil }
        let energies = binsKeV.map(Double.init)
        let rows = cells.map { c in energies.map { Foundation.exp(-mu($0, c.hydroxyapatite, c.lean, c.fat)) } }
        func window(_ low: Bool) -> [Double]? {
            var a = rows, y: [Double] = [], w: [Double] = []
            for c in cells {
                let l = low ? c.lLow : c.lHigh, v = low ? c.varianceLow : c.varianceHigh
                let t = Foundation.exp(-l)
                y.append(t)
                w.append(1 / (t * t * v))   // var T = T²·var L
            }
            a.append([Double](repeating: 1, count: energies.count))
            y.append(1)
            w.append((w.max() ?? 1) * airWeight)
            guard let s = NonNegativeLeastSquares.solve(a, y, weights: w), s.contains(where: { $0 > 0 }) else { return nil }
            return s
        }
        guard let sl = window(true), let sh = window(false) else { return nil }
        var spectra = EffectiveSpectra(energiesKeV: energies, low: sl, high: sh, residualLow: 0, residualHigh: 0)
        var zl = 0.0, zh = 0.0
        for c in cells {
            let p = spectra.attenuations(hydroxyapatite: c.hydroxyapatite, lean: c.lean, fat: c.fat)
            zl += (c.lLow - p.low) * (c.lLow - p.low) / c.varianceLow
            zh += (c.lHigh - p.high) * (c.lHigh - p.high) / c.varianceHigh
        }
        spectra.residualLow = (zl / Double(cells.count)).squareRoot()
        spectra.residualHigh = (zh / Double(cells.count)).squareRoot()
        return spectra.isWellFormed && spectra.residualLow.isFinite && spectra.residualHigh.isFinite ? spectra : nil
    }

    /// Bins within the table, weights finite and non-negative, both windows with some weight.
    public var isWellFormed: Bool {
        !energiesKeV.isEmpty && low.count == energiesKeV.count && high.count == energiesKeV.count
            && energiesKeV.allSatisfy { $0.isFinite && $0.rounded() >= Double(MaterialAttenuation.firstEnergyKeV) && $0.rounded() <= Double(MaterialAttenuation.lastEnergyKeV) }
            && (low + high).allSatisfy { $0.isFinite && $0 >= 0 } && low.contains { $0 > 0 } && high.contains { $0 > 0 }
    }

    /// Mean energy of a window's weights (keV): what the window counts, on average, in air.
    public func meanEnergy(low isLow: Bool) -> Double {
        let s = isLow ? low : high
        let total = s.reduce(0, +)
        return total > 0 ? zip(s, energiesKeV).reduce(0) { $0 + $1.0 * $1.1 } / total : .nan
    }
}

/// Non-negative least squares, min Σ_i w_i (A_i·x − y_i)² over x ≥ 0, by the active-set method
/// of C. L. Lawson and R. J. Hanson, *Solving Least Squares Problems*, Prentice-Hall 1974,
/// ch. 23 (the algorithm NNLS): the column with the largest gradient joins the passive set; if
/// its own coefficient comes out non-positive it is set aside for that step (their step 6 with
/// w_j = 0) and the next is tried; otherwise the step is cut back to the boundary, the
/// coefficients that reach it leave the set, and the rest are solved again. Columns are scaled
/// to unit norm first; each passive set is solved through its normal equations by elimination
/// with partial pivoting, a pivot under 1e-12 of the largest diagonal being singular (the
/// problems here are tens of columns). Nil for garbage (shapes, NaN, negative weights), a
/// singular passive set it cannot step out of, or no convergence in 3n steps.
enum NonNegativeLeastSquares {
    static func solve(_ a: [[Double]], _ y: [Double], weights: [Double]) -> [Double]? {
        let m = a.count
        guard m > 0, y.count == m, weights.count == m, let n = a.first?.count, n > 0, a.allSatisfy({ $0.count == n }),
              weights.allSatisfy({ $0 >= 0 && $0.isFinite }), y.allSatisfy(\.isFinite), a.allSatisfy({ $0.allSatisfy(\.isFinite) }) else { return nil }
        let sw = weights.map { $0.squareRoot() }
        var scale = [Double](repeating: 0, count: n)
        for k in 0..<n { scale[k] = (0..<m).reduce(0.0) { $0 + (sw[$1] * a[$1][k]) * (sw[$1] * a[$1][k]) }.squareRoot() }
        guard scale.allSatisfy(\.isFinite) else { return nil }
        let usable = (0..<n).filter { scale[$0] > 0 }
        // The Gram matrix of B = W^½·A with unit columns, and Bᵀb for b = W^½·y, once.
        var gram = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        var bt = [Double](repeating: 0, count: n)
        for i in 0..<m {
            for k in usable {
                let bik = sw[i] * a[i][k] / scale[k]
                bt[k] += bik * sw[i] * y[i]
                for j in usable where j >= k { gram[k][j] += bik * sw[i] * a[i][j] / scale[j] }
            }
        }
        for k in 0..<n { for j in 0..<k { gram[k][j] = gram[j][k] } }
        let largestDiagonal = usable.map { gram[$0][$0] }.max() ?? 0
        // The gradient's tolerance, relative to the data's own scale.
        let tolerance = 1e-12 * max(bt.map(abs).max() ?? 0, .leastNormalMagnitude)
        var x = [Double](repeating: 0, count: n)
        var passive: [Int] = []
        func gradient() -> [Double] {
            (0..<n).map { k in bt[k] - (0..<n).reduce(0.0) { $0 + gram[k][$1] * x[$1] } }
        }
        func leastSquares(_ set: [Int]) -> [Double]? {
            eliminate(set.map { r in set.map { gram[r][$0] } + [bt[r]] }, singularBelow: 1e-12 * largestDiagonal)
        }
        // Lawson and Hanson bound the steps by 3n; set-asides within a step are not steps (each
        // leaves one candidate fewer, so a step tries at most n).
        var steps = 0
        var converged = false
        while steps <= 3 * n {
            let w = gradient()
            var setAside: Set<Int> = []
            var step: (j: Int, z: [Double])?
            while step == nil, let j = usable.filter({ !passive.contains($0) && !setAside.contains($0) && w[$0] > tolerance }).max(by: { w[$0] < w[$1] }) {
                // The new column's own coefficient must come out positive, else it is set aside
                // (its column depends on the set's, or the gradient was rounding's).
                if let z = leastSquares(passive + [j]), let last = z.last, last > 0 { step = (j, z) } else { setAside.insert(j) }
            }
            guard let (j, first) = step else {
                converged = true
                break
            }
            steps += 1
            passive.append(j)
            var z = first
            // Cut the step back where a coefficient would turn negative; the one at the boundary
            // leaves the set (at most n times).
            var cuts = 0
            func boundary() -> (k: Int, alpha: Double)? {
                var best: (k: Int, alpha: Double)?
                for (i, c) in passive.enumerated() where z[i] <= 0 {
                    let alpha = x[c] / (x[c] - z[i])
                    if best.map({ alpha < $0.alpha }) ?? true { best = (c, alpha) }
                }
                return best
            }
            while let (k, alpha) = boundary() {
                cuts += 1
                guard cuts <= n else { return nil }
                for (i, c) in passive.enumerated() { x[c] += alpha * (z[i] - x[c]) }
                x[k] = 0
                passive = passive.filter { x[$0] > 0 }
                for c in 0..<n where !passive.contains(c) { x[c] = 0 }
                guard !passive.isEmpty else { break }
                guard let next = leastSquares(passive) else { return nil }
                z = next
            }
            for (i, c) in passive.enumerated() { x[c] = z.indices.contains(i) ? z[i] : 0 }
        }
        guard converged else { return nil }
        let result = (0..<n).map { scale[$0] > 0 ? x[$0] / scale[$0] : 0 }
        return result.allSatisfy(\.isFinite) ? result : nil
    }

    /// Weighted least squares without the constraint, through the normal equations (for tests
    /// that check `solve` against every subset); nil where singular.
    static func unconstrained(_ a: [[Double]], _ y: [Double], weights: [Double]) -> [Double]? {
        guard let n = a.first?.count, n > 0 else { return nil }
        var mat = (0..<n).map { r in (0..<n).map { c in zip(zip(a, weights), a).reduce(0.0) { $0 + $1.0.0[r] * $1.0.1 * $1.1[c] } } }
        for r in 0..<n { mat[r].append(zip(zip(a, weights), y).reduce(0.0) { $0 + $1.0.0[r] * $1.0.1 * $1.1 }) }
        return eliminate(mat, singularBelow: 1e-12 * ((0..<n).map { mat[$0][$0] }.max() ?? 0))
    }

    /// Solves the p × p system of an augmented matrix (its last column the right-hand side) by
    /// Gauss–Jordan elimination with partial pivoting; nil where a pivot is at most
    /// `singularBelow` or a result is not finite.
    static func eliminate(_ augmented: [[Double]], singularBelow: Double) -> [Double]? {
        var mat = augmented
        let p = mat.count
        for col in 0..<p {
            guard let pivot = (col..<p).max(by: { abs(mat[$0][col]) < abs(mat[$1][col]) }), abs(mat[pivot][col]) > singularBelow else { return nil }
            mat.swapAt(col, pivot)
            for r in 0..<p where r != col {
                let f = mat[r][col] / mat[col][col]
                if f != 0 { for c in col...p { mat[r][c] -= f * mat[col][c] } }
            }
        }
        let z = (0..<p).map { mat[$0][p] / mat[$0][$0] }
        return z.allSatisfy(\.isFinite) ? z : nil
    }
}
