import Foundation

/// The one rule for accepting a calibration, used by the daemon (`service.calibrate` and every
/// patient scan) and by `dexa analyze` alike, so both say the same words.
///
/// A calibration's bone residual (RMS over the phantom's cells) has two parts: the photon noise
/// of the cells' measurement, which a fit cannot remove and which says nothing against the
/// model, and the model's misfit, which biases every patient. The rule accepts a residual up to
///
///     limit = √(δ² + q·σ²)
///
/// where σ is the RMS residual the cells' own photon noise would leave (each cell's noise
/// carried through the fitted model, times √((n − p)/n) for the p fitted terms (12 or 16)), q the 99.9 %
/// point of χ²(n − p)/(n − p) (a noise-only residual fails one calibration in a thousand) and δ
/// the misfit we accept, 0.005 g/cm²: 0.5 % of a typical vertebra (at 0.01 a calibration that
/// read a phantom 2 % off passed; docs/physics.md). A calibration
/// whose noise alone exceeds `maximumNoise` is refused too: its coefficients would carry that
/// noise into every patient (scan the phantom longer). docs/physics.md has the derivation.
public struct CalibrationVerdict: Sendable, Equatable, Codable, CustomStringConvertible {
    /// RMS bone residual over the cells (g/cm²).
    public var residual: Double
    /// The RMS residual photon noise alone would leave (g/cm²); 0 when the calibration does not
    /// record its cells' noise (made before it was recorded).
    public var noise: Double
    /// The largest residual accepted (g/cm²).
    public var limit: Double
    public var accepted: Bool
    /// Why it fails, in words that name what to do; nil when accepted.
    public var problem: String?

    /// The misfit accepted beyond noise (g/cm²).
    public static let modelAllowance = 0.005
    /// The most photon noise a calibration may carry (g/cm² RMS over its cells).
    public static let maximumNoise = 0.01

    public enum CodingKeys: String, CodingKey {
        case accepted, problem
        case residual = "residual_g_cm2", noise = "noise_g_cm2", limit = "limit_g_cm2"
    }

    public init(_ calibration: Calibration) {
        residual = calibration.residualHydroxyapatite
        noise = Self.noiseResidual(calibration)
        let dof = max(1, calibration.points.count - calibration.hydroxyapatite.coefficients.count)
        let q = Self.chiSquareQuantile999(dof) / Double(dof)
        limit = (Self.modelAllowance * Self.modelAllowance + q * noise * noise).squareRoot()
        if !calibration.isWellFormed {
            problem = "the calibration is not whole (a model without its terms, or no channel response)"
        } else if !residual.isFinite {
            problem = "the calibration's fit has no finite residual"
        } else if residual > limit {
            problem = String(format: "the calibration fits its phantom to %.4f g/cm², beyond the %.4f g/cm² its photon noise (%.4f) allows: the model does not describe this unit's physics",
                             residual, limit, noise)
        } else if noise > Self.maximumNoise {
            problem = String(format: "the calibration's cells carry %.4f g/cm² of photon noise, more than %.2f: scan the phantom with more exposure",
                             noise, Self.maximumNoise)
        }
        accepted = problem == nil
    }

    /// "residual 0.0051 g/cm² (photon noise 0.0008, limit 0.0101): accepted".
    public var description: String {
        let figures = String(format: "residual %.4f g/cm² (photon noise %.4f, limit %.4f)", residual, noise, limit)
        return accepted ? figures + ": accepted" : "calibration refused: \(problem ?? figures)"
    }

    /// The RMS bone residual the cells' photon noise alone leaves: each cell's variance of
    /// (L_low, L_high), and of its bone-free partner's ratio R, carried through the fitted bone
    /// model by its derivatives.
    static func noiseResidual(_ calibration: Calibration) -> Double {
        let points = calibration.points
        let p = Double(calibration.hydroxyapatite.coefficients.count)
        guard Double(points.count) > p, calibration.isWellFormed else { return 0 }
        let model = calibration.fastBoneModel
        var partner: [String: CalibrationPoint] = [:]
        for p in points where p.hydroxyapatite == 0 { partner["\(p.lean)/\(p.fat)"] = p }
        var sum = 0.0
        for p in points {
            let (dU, dV, dR) = model.slopes(p.lLow, p.lHigh, p.softRatio)
            var variance = dU * dU * p.varianceLow + dV * dV * p.varianceHigh
            if p.hydroxyapatite != 0, let s = partner["\(p.lean)/\(p.fat)"], s.lLow > 0, s.lHigh > 0 {
                let varR = s.softRatio * s.softRatio * (s.varianceLow / (s.lLow * s.lLow) + s.varianceHigh / (s.lHigh * s.lHigh))
                variance += dR * dR * varR
            }
            if variance.isFinite { sum += variance }
        }
        let n = Double(points.count)
        return (sum / n * (n - p) / n).squareRoot()
    }

    /// The 99.9 % point of χ² with `dof` degrees of freedom (Wilson–Hilferty: within 1 % from 10
    /// degrees of freedom on; M. Abramowitz and I. Stegun, Handbook of Mathematical Functions,
    /// 26.4.17).
    static func chiSquareQuantile999(_ dof: Int) -> Double {
        let k = Double(dof), z = 3.090_232
        let t = 1 - 2 / (9 * k) + z * (2 / (9 * k)).squareRoot()
        return k * t * t * t
    }
}

extension Calibration {
    /// This calibration judged by the one rule.
    public var verdict: CalibrationVerdict { CalibrationVerdict(self) }
}
