import Foundation

/// High-energy photons counted in the low window, and their removal.
///
/// A CdTe detector puts some photons of the high window's energies into the low window: the
/// K-escape of Cd and Te (23–27 keV carried off), charge shared between neighbouring pixels,
/// and the blur of the window's edge. The low window then holds a fixed fraction f of photons
/// that are attenuated as the high window's are, and its transmission is
///
///     T_L = (1 − f)·T_L' + f·T_H,
///
/// with T_L' that of the low energies alone. The bone model, a polynomial in the two logs,
/// cannot follow the mixture across the calibration's range (the mixed share grows from a fifth
/// in air to three quarters behind the thickest cells in the second physics model), and reads
/// the ESP's L1 up to 2.3 % low (docs/physics.md). Undone before the logarithm,
///
///     T_L' = (T_L − f·T_H)/(1 − f),   var T_L' = (var T_L + f²·var T_H)/(1 − f)²,
///
/// the bone is again a function the model fits. f is a property of the detector and its
/// thresholds, so it is measured with the calibration: the value whose unmixed cells the full
/// bone model fits best (least weighted residual; the cells' pooled sums are linear in the
/// transmissions, so every trial reuses one pass over the lines), kept only where it lowers the
/// residual by more than noise would (an F test at 99 % with one degree of freedom), so that a
/// detector without the effect (the first physics model, where the windows do not mix) keeps
/// f = 0 and the attenuation stage's fast path. A firmware's own spectral correction, where the
/// ICD's units apply one, leaves nothing to find and f = 0 likewise.
public enum LowWindowMixing {
    /// The range searched: a mixture beyond 40 % of the low window's air counts would leave it
    /// too little of its own to measure bone with.
    public static let largest = 0.4
    /// The search's first grid, then a golden-section refinement to `tolerance`.
    static let gridStep = 0.01
    static let tolerance = 1e-4

    /// The calibration's measurement with the low window unmixed by the f the cells ask for
    /// (0 when they ask for none).
    public static func measure(_ gathered: CalibrationMeasurement.Gathered,
                               coverage: CalibrationMeasurement.Coverage) throws(DecompositionError) -> CalibrationMeasurement.Result {
        let none = try CalibrationMeasurement.solve(gathered, lowWindowMixing: 0, coverage: coverage, crossTerms: false)
        guard let f = fraction(gathered, unmixed: none, coverage: coverage), f > 0 else {
            return try CalibrationMeasurement.solve(gathered, lowWindowMixing: 0, coverage: coverage)
        }
        return try CalibrationMeasurement.solve(gathered, lowWindowMixing: f, coverage: coverage)
    }

    /// The f the cells ask for, or nil where the F test finds none.
    static func fraction(_ gathered: CalibrationMeasurement.Gathered, unmixed none: CalibrationMeasurement.Result,
                         coverage: CalibrationMeasurement.Coverage) -> Double? {
        guard let base = Calibration.boneMisfit(points: none.points) else { return nil }
        func misfit(_ f: Double) -> Double {
            guard f > 0 else { return base.rss }
            guard let m = try? CalibrationMeasurement.solve(gathered, lowWindowMixing: f, coverage: coverage, crossTerms: false),
                  let r = Calibration.boneMisfit(points: m.points, weighing: base.weighed) else { return .infinity }
            return r.rss
        }
        // The grid first (the misfit need not have one minimum over the whole range), then the
        // best grid point's neighbourhood by golden sections.
        let steps = Int((largest / gridStep).rounded())
        var best = (f: 0.0, rss: base.rss)
        for k in 1...steps {
            let f = Double(k) * gridStep, r = misfit(f)
            if r < best.rss { best = (f, r) }
        }
        guard best.f > 0 else { return nil }
        var a = max(best.f - gridStep, 0), b = min(best.f + gridStep, largest)
        let g = (5.0.squareRoot() - 1) / 2
        var x1 = b - g * (b - a), x2 = a + g * (b - a)
        var r1 = misfit(x1), r2 = misfit(x2)
        while b - a > tolerance {
            if r1 < r2 { b = x2; x2 = x1; r2 = r1; x1 = b - g * (b - a); r1 = misfit(x1) }
            else { a = x1; x1 = x2; r1 = r2; x2 = a + g * (b - a); r2 = misfit(x2) }
        }
        let f = (a + b) / 2, rss = misfit(f)
        let chosen = rss < best.rss ? (f: f, rss: rss) : best
        // Kept only where it explains more than the cells' noise: one parameter more than the
        // bone model's terms.
        let dof = base.weighed.count - Calibration.boneTermCount - 1
        guard dof > 0, chosen.rss > 0 else { return nil }
        let F = (base.rss - chosen.rss) / (chosen.rss / Double(dof))
        return F > Calibration.fQuantile99(1, dof) ? chosen.f : nil
    }
}
