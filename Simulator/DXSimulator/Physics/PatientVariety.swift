import Foundation

/// Patients as a clinic sees them, drawn from a seed: body size and shape, soft tissue and fat
/// (across and along the body), where the spine lies and how it curves and turns, bone density
/// from osteoporotic to dense, and where the iliac crests fall. The ranges are in
/// docs/simulator.md; an analysis is tested over many of these, never tuned to one.
public enum PatientVariety {
    /// A patient without spinal abnormality.
    /// How much of the side view's anatomy a patient has: the bodies, their curves and the
    /// ribs (`bodiesAndRibs`), or with them concave endplates, the lungs, both shoulder blades,
    /// and in some patients scoliosis, osteophytes, a necklace or a navel piercing (`full`).
    public enum LateralAnatomy: String, Sendable { case bodiesAndRibs = "bodies_and_ribs", full }

    public static func patient(seed: UInt64) -> PatientSpec { patient(seed: seed, lateralAnatomy: .full) }

    public static func patient(seed: UInt64, lateralAnatomy: LateralAnatomy) -> PatientSpec {
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
        spec.hips = hips(seed: seed, spineL1BMD: bmd[0])
        // Soft tissue over the greater trochanter: 15–70 mm to the body's edge, which may lie
        // inside a hip's field (air beyond it is normal).
        var hrng = SplitMix64(seed: seed ^ 0x5EED_0F_4195)
        let widest = spec.hips.map { $0.headOffsetMM + $0.junction.u + 0.45 * $0.shaftRadiusMM + 19 }.max() ?? 160
        spec.hipHalfWidthMM = widest + 15 + 55 * Double(hrng.next() >> 11) * 0x1p-53
        // The side view, from a stream of its own (the front view of a seed is unchanged):
        // the body's size, the thoracic kyphosis and lumbar lordosis, the ribs, the tissue
        // the beam crosses from side to side. docs/simulator.md.
        var lrng = SplitMix64(seed: seed ^ 0x1A7E_4A15)
        func lateral(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(lrng.next() >> 11) * 0x1p-53 }
        spec.thoracolumbar = PatientSpec.standardThoracolumbar(top: lateral(328, 336), scale: lateral(0.92, 1.04),
                                                               kyphosisMM: lateral(5, 25), lordosisMM: lateral(0, 12), bmd: bmd[0] * lateral(0.9, 1.0))
        // Bodies differ from the smooth run by a few per cent, and the middle thoracic ones
        // are a little wedged in health (anterior 90–98 % of posterior): a grading rule must
        // not call either a fracture.
        for k in spec.thoracolumbar.indices {
            let f = lateral(0.96, 1.04)
            spec.thoracolumbar[k].anteriorMM *= f; spec.thoracolumbar[k].middleMM *= f; spec.thoracolumbar[k].posteriorMM *= f
            if ["T6", "T7", "T8", "T9"].contains(spec.thoracolumbar[k].name) { spec.thoracolumbar[k].anteriorMM *= lateral(0.9, 0.98) }
        }
        spec.lateralSpineXMM = lateral(165, 180)
        spec.lateralSoftTissue = min(36, spec.softTissue * lateral(1.3, 1.6))
        spec.lateralRibBMD = lateral(0.2, 0.4)
        if lateralAnatomy == .full { lateralExtras(&spec, seed: seed) }
        return spec
    }

    /// The side view beyond the bodies' sizes and curves, from a stream of its own: concave
    /// endplates, the lungs, both shoulder blades; and in some patients scoliosis (double
    /// endplates), osteophytes, a necklace, a navel piercing. Ranges: docs/simulator.md.
    static func lateralExtras(_ spec: inout PatientSpec, seed: UInt64) {
        var rng = SplitMix64(seed: seed ^ 0x5CA9_011A)
        func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.next() >> 11) * 0x1p-53 }
        func chance(_ p: Double) -> Bool { uniform(0, 1) < p }
        let bodies = spec.thoracolumbar
        guard let t4 = bodies.first, bodies.count == 13 else { return }
        // Each endplate dips 0.3–1.0 mm into its body at the middle.
        let dip = uniform(0.3, 1.0)
        for k in spec.thoracolumbar.indices { spec.thoracolumbar[k].middleMM -= 2 * dip }
        spec.lungAirFraction = uniform(0.3, 0.5)
        // The shoulder blades: from above T4 to T7–T8, their posterior border 50–75 mm behind
        // the bodies, the lateral border slanting forwards over the bodies; the second 4–12 mm
        // off the first (the two sides never project as one).
        let bottom = bodies[3].topMM + bodies[3].anteriorMM + uniform(0, 25)
        let first = PatientSpec.LateralScapula(topMM: t4.topMM - uniform(10, 30), bottomMM: bottom, posteriorMM: -uniform(50, 75),
                                               anteriorTopMM: uniform(-10, 10), anteriorBottomMM: uniform(5, 30), bmd: uniform(0.12, 0.25))
        var second = first
        let dx = uniform(4, 12), dy = uniform(4, 12)
        second.topMM += dy; second.bottomMM += dy; second.posteriorMM += dx; second.anteriorTopMM += dx; second.anteriorBottomMM += dx
        spec.scapulae = [first, second]
        // Scoliosis (15 %): the bodies around an apex turned up to 4–12° about the beam's
        // perpendicular, less by a third each level away.
        if chance(0.15) {
            let apex = 2 + Int(rng.next() % 9), tilt = uniform(4, 12)
            for k in spec.thoracolumbar.indices where abs(k - apex) <= 2 {
                spec.thoracolumbar[k].coronalTiltDegrees = tilt * (1 - Double(abs(k - apex)) / 3)
            }
        }
        // Osteophytes (25 %): on one to four of T10–L4, 2–6 mm.
        if chance(0.25) {
            var levels = Array(6..<13)
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let k = levels.remove(at: Int(rng.next() % UInt64(levels.count)))
                spec.thoracolumbar[k].osteophyteMM = uniform(2, 6)
            }
        }
        // A necklace (10 %): beads in front of the upper thoracic spine. A navel piercing
        // (10 %): a ring at the front of the abdomen at L3–L4.
        if chance(0.1) {
            let x0 = spec.lateralSpineXMM + uniform(60, 110), y0 = t4.topMM + uniform(-10, 30)
            for k in 0..<8 {
                let x = x0 + Double(k) * 7, y = y0 + Double(k) * 3
                spec.lateralMetal.append(PatientSpec.MetalImplant(name: "necklace", xMM: [x, x + 4], yMM: [y, y + 4]))
            }
        }
        if chance(0.1) {
            let x = spec.lateralSpineXMM + uniform(130, 160), y = bodies[11].topMM + uniform(-5, 20)
            spec.lateralMetal.append(PatientSpec.MetalImplant(name: "navel piercing", xMM: [x, x + 6], yMM: [y, y + 6]))
        }
    }

    /// `patient(seed:)` with vertebral fractures in the side view: `count` of T4–L4 (0 to 3
    /// when nil), each of a type and a Genant grade (1–3) drawn from a stream of their own. The
    /// truth is in each vertebra's `fracture` and `grade`.
    public static func patient(seed: UInt64, lateralFractures count: Int?, lateralAnatomy: LateralAnatomy = .full) -> PatientSpec {
        var spec = patient(seed: seed, lateralAnatomy: lateralAnatomy)
        var rng = SplitMix64(seed: seed ^ 0xF4AC_7E)
        let n = count ?? Int(rng.next() % 4)
        var levels = Array(spec.thoracolumbar.indices)
        for _ in 0..<min(n, levels.count) {
            let k = levels.remove(at: Int(rng.next() % UInt64(levels.count)))
            let kinds = PatientSpec.LateralVertebra.Fracture.allCases
            let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
            spec.thoracolumbar[k] = spec.thoracolumbar[k].fractured(kind, grade: 1 + Int(rng.next() % 3))
        }
        return spec
    }

    /// Both hips of one patient: sizes, angles, bone density (following the spine's, with
    /// scatter), the leg's rotation as a brace leaves it (15–30° inwards), a little abduction,
    /// and the pelvis. Ranges and sources: docs/simulator.md. Drawn from their own stream, so
    /// the spine of a seed is the same with or without them.
    static func hips(seed: UInt64, spineL1BMD: Double) -> [ProximalFemur] {
        var rng = SplitMix64(seed: seed &* 0x2545_F491 &+ 0x41F)
        func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.next() >> 11) * 0x1p-53 }
        let scale = uniform(0.9, 1.12)
        let t = max(0, min(1, (spineL1BMD - 0.65) / 0.6 + uniform(-0.2, 0.2)))
        var base = ProximalFemur(side: .left)
        base.headOffsetMM = uniform(82, 98)
        base.headYMM = uniform(885, 910)
        base.headRadiusMM = uniform(21, 25.5) * scale
        base.neckRadiusMM = uniform(13.5, 17) * scale
        base.neckDepthRatio = uniform(0.78, 0.92)
        base.shaftRadiusMM = uniform(13.5, 16.5) * scale
        base.neckLengthMM = uniform(52, 62) * scale
        base.neckShaftAngleDeg = uniform(120, 135)
        base.anteversionDeg = uniform(5, 20)
        base.trabecularDensity = 0.12 + 0.3 * t
        base.cortexScale = 0.6 + 0.7 * max(0, min(1, t + uniform(-0.15, 0.15)))
        base.shaftCortexMM = uniform(4.5, 6.5)
        base.pelvisDensity = uniform(0.55, 0.9)
        base.ischiumShiftMM = uniform(-8, 6)
        return [ProximalFemur.Side.right, .left].map { side in
            var h = base
            h.side = side
            h.internalRotationDeg = uniform(15, 30)
            h.abductionDeg = uniform(-3, 3)
            h.trabecularDensity *= uniform(0.96, 1.04)
            return h
        }
    }

    /// What a hip scan can carry that an analysis must notice.
    public enum HipVariant: String, Sendable, CaseIterable, Codable {
        /// The leg turned outwards (the brace not used): the lesser trochanter stands out.
        case externallyRotated
        /// The leg swung out: the shaft not parallel to the scan.
        case abducted
        /// A total hip replacement.
        case prosthesis
    }

    /// `patient(seed:)` with both hips given the variant.
    public static func patient(seed: UInt64, with variant: HipVariant) -> PatientSpec {
        var spec = patient(seed: seed)
        var rng = SplitMix64(seed: seed ^ 0x41F_0A7)
        func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(rng.next() >> 11) * 0x1p-53 }
        for i in spec.hips.indices {
            switch variant {
            case .externallyRotated: spec.hips[i].internalRotationDeg = uniform(-25, -5)
            case .abducted: spec.hips[i].abductionDeg = uniform(10, 18)
            case .prosthesis: spec.hips[i].prosthesis = true
            }
        }
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
