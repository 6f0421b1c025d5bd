import Foundation

/// What one channel of the CdTe counting detector records for a photon of a given energy
/// (docs/physics.md, "Second model"): the chance it interacts in the crystal, then K
/// fluorescence of Cd or Te escaping (through the front face or the pixel's y edges, lost;
/// or into the x neighbour, which counts it), charge shared with the x neighbour or with
/// the guard ring beyond the y edges, and the energy resolution blurring each deposit
/// against the channel's two thresholds.
struct CdTeResponse: Sendable {
    /// Expected counts per incident photon: in this channel's low and high windows, and
    /// (`out…`) delivered to its two x neighbours together.
    struct Counts: Sendable {
        var ownLow = 0.0, ownHigh = 0.0, outLow = 0.0, outHigh = 0.0
    }

    let parameters: CdTeParameters
    /// This channel's thresholds (keV), nominal plus its trim residual.
    let lowThresholdKeV: Double
    let highThresholdKeV: Double
    let pixelXUm: Double

    private static let density = 5.85  // g/cm³, CdTe

    /// μ (1/cm) of CdTe at any energy, interpolated in log–log between the table's keV
    /// steps (the fluorescence lines fall between them), not across an edge.
    static func mu(_ eKeV: Double) -> Double {
        let first = Double(AttenuationTable.firstEnergyKeV)
        let table = SecondModelTables.cdTeTotal
        let x = min(max(eKeV - first, 0), Double(table.count - 1))
        let i = min(Int(x), table.count - 2)
        let f = x - Double(i)
        let a = table[i], b = table[i + 1]
        // An edge between the two steps: take the side the energy is on.
        if b > a { return (f < 0.5 ? a : b) * density }
        return Foundation.exp(Foundation.log(a) * (1 - f) + Foundation.log(b) * f) * density
    }

    /// Standard deviation (keV) of a deposit's measured energy: electronic noise (threshold
    /// dispersion included), Fano statistics of the pairs, and incomplete hole collection
    /// growing with energy, added in quadrature.
    func sigma(_ depositKeV: Double) -> Double {
        let p = parameters
        let fano = 2.355 * (p.fanoFactor * p.pairEnergyEV / 1000 * depositKeV).squareRoot()
        let trapping = p.trappingFWHMFraction * depositKeV
        let fwhm = (p.electronicFWHMKeV * p.electronicFWHMKeV + fano * fano + trapping * trapping).squareRoot()
        return fwhm / 2.3548
    }

    /// Probability that a deposit reads in the low window [T₁, T₂) and the high window [T₂, ∞).
    func windows(_ depositKeV: Double) -> (low: Double, high: Double) {
        guard depositKeV > 0 else { return (0, 0) }
        if !parameters.energyBlur {
            return (depositKeV >= lowThresholdKeV && depositKeV < highThresholdKeV ? 1 : 0, depositKeV >= highThresholdKeV ? 1 : 0)
        }
        let s = sigma(depositKeV) * 2.0.squareRoot()
        let above1 = 0.5 * erfc((lowThresholdKeV - depositKeV) / s)
        let above2 = 0.5 * erfc((highThresholdKeV - depositKeV) / s)
        return (max(0, above1 - above2), above2)
    }

    /// Mean window probabilities of the part u·E of a shared deposit, u uniform in (0, 1).
    private func sharedWindows(_ eKeV: Double) -> (low: Double, high: Double) {
        let n = 24
        var low = 0.0, high = 0.0
        for k in 0..<n {
            let w = windows(eKeV * (Double(k) + 0.5) / Double(n))
            low += w.low; high += w.high
        }
        return (low / Double(n), high / Double(n))
    }

    /// Expected counts for one photon of `eKeV` arriving on this channel.
    func counts(incidentKeV e: Double) -> Counts {
        let p = parameters
        let first = AttenuationTable.firstEnergyKeV
        let k = Int(e.rounded()) - first
        guard k >= 0, k < SecondModelTables.cdTeTotal.count else { return Counts() }
        let mu = SecondModelTables.cdTeTotal[k] * Self.density
        let interacts = 1 - Foundation.exp(-mu * p.crystalThicknessMM / 10)
        var result = Counts()
        var remaining = 1.0  // share of interactions not yet given a fate
        let pixelY = p.pixelYUm

        // K fluorescence: photoabsorption in the K shell (1 − 1/J of it above the edge),
        // radiative with probability ω_K, at the element's own lines.
        if p.kEscape {
            let shells: [(SecondModelTables.KEdge, [Double], [(energyKeV: Double, share: Double)])] = [
                (SecondModelTables.cadmiumK, SecondModelTables.cdTePhotoCd, SecondModelTables.cadmiumLines),
                (SecondModelTables.telluriumK, SecondModelTables.cdTePhotoTe, SecondModelTables.telluriumLines),
            ]
            for (edge, photo, lines) in shells where e > edge.energyKeV {
                let pK = photo[k] * Self.density / mu * (1 - 1 / edge.jumpRatio) * edge.fluorescenceYield
                for line in lines {
                    let muF = Self.mu(line.energyKeV)
                    // Escape through the front face of a thick slab, photon absorbed at depth
                    // z ~ μe^{−μz}, fluorescence isotropic: ½[1 − (μ_f/μ) ln(1 + μ/μ_f)].
                    let front = 0.5 * (1 - muF / mu * Foundation.log(1 + mu / muF))
                    // Across a pixel edge: the mean |projection| of a free path 1/μ_f on one
                    // axis is 1/(2μ_f); from a uniform point in a pixel of width w it leaves
                    // through one of the two edges with probability ≈ 1/(μ_f w).
                    let lambdaUm = 1e4 / muF
                    let sideX = min(1, lambdaUm / pixelXUm) * (1 - front)
                    let sideY = min(1, lambdaUm / pixelY) * (1 - front)
                    let pLine = pK * line.share
                    let rest = e - line.energyKeV
                    let w = windows(rest)
                    let lost = pLine * (front + sideY)
                    let toNeighbour = pLine * sideX
                    result.ownLow += (lost + toNeighbour) * w.low
                    result.ownHigh += (lost + toNeighbour) * w.high
                    let f = windows(line.energyKeV)
                    result.outLow += toNeighbour * f.low
                    result.outHigh += toNeighbour * f.high
                    remaining -= lost + toNeighbour
                }
            }
        }
        // Charge sharing: an event within one charge-cloud radius of an edge splits its
        // charge, u·E here and (1 − u)·E beyond (the x neighbour counts it; the guard ring
        // beyond the y edges does not).
        if p.chargeSharing {
            let r = p.chargeCloudRadiusUm
            let shareX = min(1, 2 * r / pixelXUm) * remaining
            let shareY = min(1, 2 * r / pixelY) * remaining
            let s = sharedWindows(e)
            result.ownLow += (shareX + shareY) * s.low
            result.ownHigh += (shareX + shareY) * s.high
            result.outLow += shareX * s.low
            result.outHigh += shareX * s.high
            remaining -= shareX + shareY
        }
        let full = windows(e)
        result.ownLow += remaining * full.low
        result.ownHigh += remaining * full.high
        result.ownLow *= interacts; result.ownHigh *= interacts
        result.outLow *= interacts; result.outHigh *= interacts
        return result
    }
}
