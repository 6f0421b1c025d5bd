import Foundation

/// The second model's X-ray tube (docs/physics.md, "Second model"): a thick tungsten target
/// after Birch & Marshall (1979) — bremsstrahlung from electrons slowing down by the
/// Thomson–Whiddington law, each photon absorbed on its way out of the anode — with the
/// tungsten K lines by the Green–Cosslett law, then inherent and added filtration and a
/// samarium K-edge filter. Because the way out of the anode depends on the take-off angle,
/// every ray of the fan gets its own spectrum: the heel effect.
struct ThickTargetSpectrum: Sendable {
    /// Photon energies (keV) of the bins, 1 keV apart from `AttenuationTable.firstEnergyKeV`.
    let energiesKeV: [Double]
    /// Photons per bin leaving the tube along the ray, relative (the detector normalises).
    let fluence: [Double]

    /// The spectrum along a ray leaving the anode surface at `takeOffDegrees`.
    init(parameters p: CdTeParameters, takeOffDegrees: Double) {
        let first = AttenuationTable.firstEnergyKeV
        let kVp = p.kVp
        let sinAlpha = Foundation.sin(max(takeOffDegrees, 0.5) * .pi / 180)
        let c = p.thomsonWhiddingtonKeV2Cm2PerG
        let steps = 48
        /// Photons made by an electron slowing from T₀ down to `lo` (midpoint rule in T), at
        /// depth x(T) = (T₀² − T²)/C, that escape the anode through x / sin α of tungsten: the
        /// sum over the steps, and the step. The continuum and the K lines alike.
        func escaping(muW: Double, from lo: Double) -> (sum: Double, dT: Double) {
            var sum = 0.0
            let dT = (kVp - lo) / Double(steps)
            for s in 0..<steps {
                let t = lo + (Double(s) + 0.5) * dT
                sum += Foundation.exp(-muW * (kVp * kVp - t * t) / c / sinAlpha)
            }
            return (sum, dT)
        }
        var energies: [Double] = []
        var phi: [Double] = []
        for (i, e) in AttenuationTable.energiesKeV.enumerated() where e < kVp {
            // Bremsstrahlung: the thin-target photon number per keV per g/cm² is ∝ 1/(E·T)
            // (Kramers' thin-target law), the path per keV lost is dx = 2T dT / C
            // (Thomson–Whiddington), and a photon made at depth x = (T₀² − T²)/C crosses
            // x / sin α of tungsten on its way out. So N(E) ∝ (1/E) ∫_E^T₀ exp(−μ_W(E) x(T) / sin α) dT.
            let (sum, dT) = escaping(muW: AttenuationTable.tungsten[i], from: e)
            energies.append(e)
            phi.append(sum * dT / e)  // → (T₀ − E)/E, Kramers, without absorption
        }
        // Tungsten K lines, made while the electron still has more than the K edge's energy,
        // so from depths up to x(E_K) (taken uniformly in T), absorbed on the way out like the
        // continuum. Yield per electron ∝ (U − 1)^1.63, U = T₀/E_K (Green & Cosslett 1968).
        let edge = SecondModelTables.tungstenK.energyKeV
        if kVp > edge {
            let yield = p.kLineYield * Foundation.pow(kVp / edge - 1, 1.63)
            for line in SecondModelTables.tungstenLines {
                let k = Int(line.energyKeV.rounded()) - first
                guard k >= 0, k < phi.count else { continue }
                let (sum, _) = escaping(muW: AttenuationTable.tungsten[k], from: edge)
                phi[k] += yield * line.share * sum / Double(steps)
            }
        }
        // Filtration: inherent (glass envelope, oil, port; aluminium equivalent) and added
        // aluminium, and the samarium K-edge filter.
        let alGcm2 = 2.699 * (p.inherentAluminiumMM + p.addedAluminiumMM) / 10
        for k in phi.indices {
            phi[k] *= Foundation.exp(-AttenuationTable.aluminium[k] * alGcm2 - SecondModelTables.samarium[k] * p.samariumGcm2)
        }
        energiesKeV = energies
        fluence = phi
    }

    /// Mean energy of the photons in [lo, hi) keV.
    func meanEnergy(from lo: Double, to hi: Double) -> Double {
        var s = 0.0, w = 0.0
        for (e, n) in zip(energiesKeV, fluence) where e >= lo && e < hi { s += e * n; w += n }
        return w > 0 ? s / w : 0
    }
}
