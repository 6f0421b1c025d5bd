import Foundation

/// What the beam crosses at one point: areal densities (g/cm²) of the ICD's three materials.
public struct Composition: Sendable, Hashable, Codable {
    public var hydroxyapatite: Double
    public var lean: Double
    public var fat: Double

    public init(hydroxyapatite: Double = 0, lean: Double = 0, fat: Double = 0) {
        self.hydroxyapatite = hydroxyapatite; self.lean = lean; self.fat = fat
    }

    public static let air = Composition()
}

/// The simulated tube's spectrum: a tungsten anode at `kVp`, bremsstrahlung by Kramers' law
/// (photons per keV ∝ (E₀ − E)/E), the tungsten K lines above their edge, hardened by the
/// tube's aluminium and a cerium K-edge filter (which splits the beam into a low and a high
/// band, as real fan-beam densitometers do). Fluence per 1 keV bin, relative. See
/// docs/physics.md for the model and its sources.
public struct XRaySpectrum: Sendable {
    public let energiesKeV: [Double]
    public let fluence: [Double]

    public init(kVp: Double = 100, aluminiumMM: Double = 2.5, ceriumGcm2: Double = 0.12) {
        var energies: [Double] = []
        var phi: [Double] = []
        let table = AttenuationTable.self
        for (i, e) in table.energiesKeV.enumerated() where e < kVp {
            var n = (kVp - e) / e  // Kramers, photons per keV
            // Tungsten K lines (keV, relative to the bremsstrahlung at 60 keV), present above the 69.5 keV edge.
            if kVp > 69.5 {
                let lines: [(Double, Double)] = [(58.0, 0.55), (59.3, 0.95), (67.2, 0.35), (69.1, 0.09)]
                for (le, w) in lines where abs(e - le) < 0.5 { n += w * (kVp - 60) / 60 * ((kVp - 69.5) / 30) }
            }
            let alAreal = 2.70 * aluminiumMM / 10
            n *= Foundation.exp(-table.aluminium[i] * alAreal - table.cerium[i] * ceriumGcm2)
            energies.append(e)
            phi.append(max(0, n))
        }
        energiesKeV = energies
        fluence = phi
    }

    /// Mean energy of the photons in [lo, hi) keV.
    public func meanEnergy(from lo: Double, to hi: Double) -> Double {
        var s = 0.0, w = 0.0
        for (e, n) in zip(energiesKeV, fluence) where e >= lo && e < hi { s += e * n; w += n }
        return w > 0 ? s / w : 0
    }
}

/// The beam as the detector sees it: the spectrum split into the photon-counting detector's
/// two energy windows, and the transmission of any composition through each window,
/// polychromatic (so log attenuation is not linear in thickness: beam hardening).
public struct DualEnergyBeam: Sendable {
    public let spectrum: XRaySpectrum
    /// Window edges in keV: low [lowFrom, split), high [split, ∞).
    public let lowFrom: Double
    public let split: Double
    private let lowWeights: [Double]
    private let highWeights: [Double]
    /// The photons each window counts in air, in the spectrum's own (relative) units: what a
    /// moved edge or another tube voltage does to the counts before any object is in the beam.
    public let airFluence: (low: Double, high: Double)
    private let muHA: [Double], muLean: [Double], muFat: [Double]

    public init(spectrum: XRaySpectrum = XRaySpectrum(), lowFrom: Double = 20, split: Double = 52) {
        self.spectrum = spectrum
        self.lowFrom = lowFrom
        self.split = split
        let first = AttenuationTable.firstEnergyKeV
        var lw: [Double] = [], hw: [Double] = []
        var ha: [Double] = [], le: [Double] = [], fa: [Double] = []
        for (e, n) in zip(spectrum.energiesKeV, spectrum.fluence) {
            let i = Int(e) - first
            // Bin e holds the photons of [e, e + 1) keV: the share of it inside each window,
            // so that an edge moved by a fraction of a keV moves the counts by as much (whole
            // for the standard, whole-keV edges).
            lw.append(n * max(0, min(split, e + 1) - max(lowFrom, e)))
            hw.append(n * max(0, min(Double.infinity, e + 1) - max(split, e)))
            ha.append(AttenuationTable.hydroxyapatite[i])
            le.append(AttenuationTable.lean[i])
            fa.append(AttenuationTable.fat[i])
        }
        let ls = lw.reduce(0, +), hs = hw.reduce(0, +)
        airFluence = (ls, hs)
        lowWeights = lw.map { $0 / max(ls, 1e-300) }
        highWeights = hw.map { $0 / max(hs, 1e-300) }
        muHA = ha; muLean = le; muFat = fa
    }

    /// Fraction of each window's photons that get through `c`.
    public func transmission(_ c: Composition) -> (low: Double, high: Double) {
        if c == .air { return (1, 1) }
        var low = 0.0, high = 0.0
        for k in 0..<lowWeights.count {
            let t = Foundation.exp(-(muHA[k] * c.hydroxyapatite + muLean[k] * c.lean + muFat[k] * c.fat))
            low += lowWeights[k] * t
            high += highWeights[k] * t
        }
        return (low, high)
    }
}

/// A composition lookup with a bounded cache: phantoms have few distinct compositions,
/// so most lines cost no exponentials at all.
struct TransmissionCache: Sendable {
    let beam: DualEnergyBeam
    private var cache: [Composition: (Double, Double)] = [:]

    init(beam: DualEnergyBeam) { self.beam = beam }

    mutating func transmission(_ c: Composition) -> (low: Double, high: Double) {
        if let t = cache[c] { return t }
        let t = beam.transmission(c)
        if cache.count >= 8192 { cache.removeAll(keepingCapacity: true) }
        cache[c] = t
        return t
    }
}
