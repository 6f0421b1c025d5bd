import Foundation

/// Patients as a clinic sees them, drawn from a seed: body size and shape, soft tissue and fat
/// (across and along the body), where the spine lies and how it curves and turns, bone density
/// from osteoporotic to dense, and where the iliac crests fall. The ranges are in
/// docs/simulator.md; an analysis is tested over many of these, never tuned to one.
public enum PatientVariety {
    /// A patient without spinal abnormality.
    public static func patient(seed: UInt64) -> PatientSpec {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9 &+ 17)
        func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.next() >> 11) * 0x1p-53 }
        var spec = PatientSpec()
        spec.softTissue = uniform(12, 26)
        spec.fatFractionRight = uniform(0.15, 0.45)
        spec.fatFractionLeft = min(0.5, max(0.1, spec.fatFractionRight + uniform(-0.1, 0.1)))
        spec.halfWidthMM = uniform(140, 200)
        spec.alongBodyVariation = uniform(0, 0.1)
        let scale = uniform(0.9, 1.1)
        // Density: L1 from 0.65 (osteoporotic) to 1.25 g/cm², rising caudally by 2–5 % a level.
        var bmd = [uniform(0.65, 1.25)]
        for _ in 1..<5 { bmd.append((bmd.last ?? 1) * uniform(1.02, 1.05)) }
        var spine = APSpine.adult(lumbarBMD: bmd, scale: scale, l1TopMM: uniform(612, 635))
        spine.offsetMM = uniform(-8, 8)
        if uniform(0, 1) < 0.4 {
            spine.scoliosisMM = uniform(4, 18) * (uniform(0, 1) < 0.5 ? -1 : 1)
            spine.scoliosisApexMM = uniform(650, 740)
            spine.scoliosisWidthMM = uniform(45, 80)
        }
        spine.rotationDeg = uniform(-6, 6)
        spine.posteriorElementsBMD = uniform(0.22, 0.38)
        spine.ribBMD = uniform(0.4, 0.6)
        spine.iliumBMD = uniform(0.55, 0.85)
        // The intercristal line at the L4–L5 disc, give or take a few millimetres.
        if let crest = spine.iliacCrestBelowMM { spine.iliacCrestBelowMM = crest + uniform(-6, 6) }
        spec.spine = spine
        return spec
    }

    /// What an AP spine can carry that makes a vertebra unmeasurable.
    public enum SpineAbnormality: String, Sendable, CaseIterable, Codable {
        case osteophyte, fracture, screws, piercing, sclerosis
    }

    /// `patient(seed:)` with one abnormality on one of L1–L4 (chosen by the seed); returns the
    /// vertebra it affects.
    public static func patient(seed: UInt64, with abnormality: SpineAbnormality) -> (spec: PatientSpec, vertebra: String) {
        var spec = patient(seed: seed)
        var rng = SplitMix64(seed: seed ^ 0xAB0B)
        let k = Int(rng.next() % 4)
        let name = "L\(k + 1)"
        guard let i = spec.spine.vertebrae.firstIndex(where: { $0.name == name }) else { return (spec, name) }
        switch abnormality {
        case .osteophyte: spec.spine.vertebrae[i].osteophyte = rng.next() % 2 == 0 ? .left : .right
        case .fracture: spec.spine.vertebrae[i].heightLoss = 0.25 + 0.15 * Double(rng.next() % 1000) / 1000
        case .sclerosis: spec.spine.vertebrae[i].sclerosisBMD = 0.4
        case .screws:
            // Two vertebrae fused: this one and the next (or the one above L4).
            let j = k == 3 ? i - 1 : i + 1
            spec.spine.vertebrae[i].screws = true
            spec.spine.vertebrae[j].screws = true
        case .piercing:
            // A navel ring: a few millimetres of metal on the midline over the vertebra.
            let placed = spec.spine.layout[i]
            let x = spec.midlineMM + placed.centreX + Double(Int(rng.next() % 9) - 4)
            spec.metal.append(.init(name: "navel piercing", xMM: [x - 2.5, x + 2.5], yMM: [placed.centreY - 2.5, placed.centreY + 2.5]))
        }
        return (spec, name)
    }
}
