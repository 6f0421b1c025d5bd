import Foundation

/// A proximal femur and the pelvis around it, as the front view (AP) sees it: the femoral
/// head (a sphere) in the acetabulum, whose roof and walls overlap it; the neck, an oval
/// cylinder at the neck–shaft angle that narrows between head and base; the greater trochanter
/// above and lateral of the base, the lesser trochanter on the shaft's medial side below it,
/// the intertrochanteric region between; the shaft, a cortical tube with a marrow canal; the
/// ilium above the joint, the ischium below and medial of it, the pubic ramus medially. Each
/// part is a solid seen through its chord: trabecular bone inside a cortical shell, so edges
/// are sharp and the cortex shows, as on a printout.
///
/// What positioning changes: internal rotation of the leg (a technologist's foot brace turns it
/// 15–25° inwards) takes out the neck's anteversion, so the neck lies flat and the lesser
/// trochanter hides behind the shaft; external rotation foreshortens the neck, raises its
/// projected angle to the shaft and brings the lesser trochanter out medially. Abduction
/// swings the femur about the head's centre, so the shaft is no longer parallel to the scan.
///
/// Local frame: u from the head's centre outwards (lateral, away from the midline), v from it
/// towards the feet; millimetres; densities in g/cm³ of hydroxyapatite (volumetric, so that
/// areal density is density × chord). Sizes and their sources: docs/simulator.md.
public struct ProximalFemur: Sendable, Codable, Equatable {
    public enum Side: String, Sendable, Codable { case left, right }
    public var side: Side
    /// The head's centre: distance from the body's midline, and y on the table.
    public var headOffsetMM = 90.0
    public var headYMM = 900.0
    public var headRadiusMM = 23.0
    /// The angle between the neck's axis (towards the head) and the shaft's (towards the knee).
    public var neckShaftAngleDeg = 127.0
    /// Head centre to where the neck axis meets the shaft axis, along the neck (3-D).
    public var neckLengthMM = 58.0
    /// Half the neck's width at its narrowest, and its depth as a fraction of its width.
    public var neckRadiusMM = 15.0
    public var neckDepthRatio = 0.85
    public var shaftRadiusMM = 15.0
    public var shaftCortexMM = 5.0
    /// Cortical shell elsewhere (head, neck, trochanters), before `cortexScale`.
    public var shellMM = 1.2
    /// Trabecular bone's volumetric density, and cortical bone's.
    public var trabecularDensity = 0.32
    public var corticalDensity = 1.0
    /// Osteoporosis thins cortices as it lightens trabeculae.
    public var cortexScale = 1.0
    /// Femoral anteversion, and how far the leg is turned inwards (the brace's 15–25°).
    public var anteversionDeg = 12.0
    public var internalRotationDeg = 20.0
    /// The femur swung outwards about the head's centre.
    public var abductionDeg = 0.0
    /// A total hip replacement: metal head and stem.
    public var prosthesis = false
    /// The pelvis: the ischium's place across (positive: nearer the femur), and its density.
    public var ischiumShiftMM = 0.0
    public var pelvisDensity = 0.75

    public init(side: Side) { self.side = side }

    enum CodingKeys: String, CodingKey {
        case side, headOffsetMM, headYMM, headRadiusMM, neckShaftAngleDeg, neckLengthMM, neckRadiusMM, neckDepthRatio, shaftRadiusMM
        case shaftCortexMM, shellMM, trabecularDensity, corticalDensity, cortexScale, anteversionDeg, internalRotationDeg, abductionDeg
        case prosthesis, ischiumShiftMM, pelvisDensity
    }

    /// Every field optional in JSON but `side` (a test or `dexa-sim` describes only what differs).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(side: try c.decode(Side.self, forKey: .side))
        func read(_ key: CodingKeys, _ v: inout Double) throws { if let x = try c.decodeIfPresent(Double.self, forKey: key) { v = x } }
        try read(.headOffsetMM, &headOffsetMM); try read(.headYMM, &headYMM); try read(.headRadiusMM, &headRadiusMM)
        try read(.neckShaftAngleDeg, &neckShaftAngleDeg); try read(.neckLengthMM, &neckLengthMM); try read(.neckRadiusMM, &neckRadiusMM)
        try read(.neckDepthRatio, &neckDepthRatio); try read(.shaftRadiusMM, &shaftRadiusMM); try read(.shaftCortexMM, &shaftCortexMM)
        try read(.shellMM, &shellMM); try read(.trabecularDensity, &trabecularDensity); try read(.corticalDensity, &corticalDensity)
        try read(.cortexScale, &cortexScale); try read(.anteversionDeg, &anteversionDeg); try read(.internalRotationDeg, &internalRotationDeg)
        try read(.abductionDeg, &abductionDeg); try read(.ischiumShiftMM, &ischiumShiftMM); try read(.pelvisDensity, &pelvisDensity)
        prosthesis = try c.decodeIfPresent(Bool.self, forKey: .prosthesis) ?? false
    }

    // MARK: - Geometry (local frame, before abduction)

    /// The neck's out-of-plane angle: anteversion less the leg's internal rotation.
    var outOfPlane: Double { (anteversionDeg - internalRotationDeg) * .pi / 180 }
    /// The neck's axis projected, per millimetre of 3-D length, from the head towards the shaft.
    var neckStep: (u: Double, v: Double) {
        let theta = neckShaftAngleDeg * .pi / 180
        return (sin(theta) * cos(outOfPlane), -cos(theta))
    }
    var projectedNeckLength: Double { neckLengthMM * hypot(neckStep.u, neckStep.v) }
    /// Where the neck axis meets the shaft axis.
    var junction: (u: Double, v: Double) { (neckLengthMM * neckStep.u, neckLengthMM * neckStep.v) }
    /// The neck's narrowest point, along its projected axis from the head's centre.
    var waistS: Double { 0.5 * projectedNeckLength }
    /// How far the lesser trochanter stands out medially past the shaft: it sits behind the
    /// shaft, so internal rotation hides it (4 mm at 30° inwards, 7 mm at 15°) and turning the
    /// leg outwards brings it out (10 mm at neutral, 14 mm at 25° outwards).
    public var lesserTrochanterProtrusionMM: Double { 4 + 12 * sin(max(0, min(80, 30 - internalRotationDeg)) * .pi / 180) }
    var cortex: Double { shellMM * cortexScale }

    /// The neck's half-width at s along its projected axis: narrowest at the waist, widening
    /// towards the head and more towards the base.
    func neckRadius(_ s: Double) -> Double {
        let w = waistS, end = projectedNeckLength
        if s < w { let t = (w - s) / w; return neckRadiusMM * (1 + 0.3 * t * t) }
        let t = (s - w) / max(1, end - w)
        return neckRadiusMM * (1 + 0.45 * t * t)
    }

    /// Areal density (g/cm²) of a solid of half-width `r` and depth `depth` (as a fraction of
    /// its width) at distance d from its axis: trabecular inside, a cortical shell of `shell`.
    func chordDensity(d: Double, r: Double, depth: Double, shell: Double, trabecular: Double) -> Double {
        guard abs(d) < r else { return 0 }
        let outer = 2 * depth * (r * r - d * d).squareRoot()
        let ri = max(0, r - shell)
        let inner = abs(d) < ri ? 2 * depth * (ri * ri - d * d).squareRoot() : 0
        return (corticalDensity * (outer - inner) + trabecular * inner) / 10
    }

    /// An ellipsoid seen along its depth: semi-axes a (across) and b (along), depth c.
    func ellipsoid(du: Double, dv: Double, a: Double, b: Double, c: Double, shell: Double, trabecular: Double) -> Double {
        let q = (du * du) / (a * a) + (dv * dv) / (b * b)
        guard q < 1 else { return 0 }
        // Scale the ellipse to a circle of radius a: distance from the centre a·√q.
        return chordDensity(d: a * q.squareRoot(), r: a, depth: c / a, shell: shell, trabecular: trabecular)
    }

    /// The femur's own bone at a local point (u, v) after undoing the abduction: the truth an
    /// ROI over the femur measures. The parts overlap near their joins; the densest one counts
    /// (a union of solids, not a sum).
    public func femurLocal(u: Double, v: Double) -> Double {
        let (u, v) = unabducted(u: u, v: v)
        let tb = trabecularDensity, shell = cortex
        var best = 0.0
        // The head.
        let r = hypot(u, v)
        if r < headRadiusMM { best = chordDensity(d: r, r: headRadiusMM, depth: 1, shell: shell, trabecular: tb * 1.15) }
        // The neck: an oval cylinder along the projected axis; the beam crosses it obliquely
        // when the neck is turned out of the plane (the chord lengthens by 1/cos).
        let step = neckStep, len = hypot(step.u, step.v)
        let eu = step.u / len, ev = step.v / len
        let s = u * eu + v * ev, d = -u * ev + v * eu
        if s > 0 && s < projectedNeckLength + 8 {
            best = max(best, chordDensity(d: d, r: neckRadius(s), depth: neckDepthRatio / cos(outOfPlane), shell: shell, trabecular: tb))
        }
        let j = junction
        // The intertrochanteric region: an ellipsoid around the junction, trabecular.
        best = max(best, ellipsoid(du: u - j.u, dv: v - j.v - 8, a: shaftRadiusMM + 3, b: 24, c: 22, shell: shell, trabecular: tb * 0.6))
        // The greater trochanter: lateral of the junction, its tip near the head's centre
        // level, sparse trabecular bone in a thin shell (the trochanter reads about 0.8 of the
        // neck: docs/simulator.md).
        best = max(best, ellipsoid(du: u - j.u - 0.55 * shaftRadiusMM, dv: v - j.v + 12, a: 15, b: 22, c: 20, shell: shell * 0.5,
                                   trabecular: tb * 0.3))
        // The lesser trochanter: on the shaft's medial side, standing out with external rotation.
        let p = lesserTrochanterProtrusionMM, a = (p + 9) / 2
        best = max(best, ellipsoid(du: u - (j.u - shaftRadiusMM - p + a), dv: v - j.v - 34, a: a, b: 13, c: 14, shell: shell,
                                   trabecular: tb))
        // The shaft: a cortical tube, its canal full of trabecular bone near the top and marrow below.
        let below = v - (j.v - 8)
        if below > 0 && below < 260 {
            let du = u - j.u
            let fill = max(0, min(1, 1 - (below - 45) / 40))
            // The cortex thickens from the metaphysis (1–2 mm) to the diaphysis below.
            let cortexMM = shaftCortexMM * cortexScale * min(1, max(0.3, (below - 30) / 70))
            best = max(best, chordDensity(d: du, r: shaftRadiusMM, depth: 1, shell: cortexMM, trabecular: tb * 0.9 * fill))
        }
        return best
    }

    /// The pelvis at a local point (not moved by the femur's abduction): the acetabulum's roof
    /// and walls over the head, the ilium above, the ischium and the pubic ramus below and medial.
    func pelvisLocal(u: Double, v: Double) -> Double {
        let rho = pelvisDensity
        var bone = 0.0
        let r = hypot(u, v), rh = headRadiusMM
        // The roof (sourcil): a dense arc over the head's upper half.
        let angle = atan2(v, u)  // v down: the roof is at negative angles
        if r > rh + 0.5 && r < rh + 10 && angle < -0.25 && angle > -.pi + 0.2 { bone += rho * 1.2 * smooth((rh + 10 - r) / 3) }
        // The acetabular walls over the head's medial part.
        if r < rh + 0.5 && u < rh * 0.25 { bone += 0.35 * rho * smooth((rh * 0.25 - u) / 6) }
        // The ilium's body above the joint, to the top of the hip's field (the wing above it
        // belongs to the spine's scene: `APSpine`).
        if v < -(rh + 8) && v > -(rh + 50) && u < rh * 0.6 && u > -70 {
            bone += rho * 0.8 * smooth((-(rh + 8) - v) / 5) * smooth((rh * 0.6 - u) / 8) * smooth((v + rh + 50) / 5) * smooth((u + 70) / 8)
        }
        // The ischium: a band from below the acetabulum down and a little medial.
        let top = (u: -0.7 * rh + ischiumShiftMM, v: 0.75 * rh), bottom = (u: -rh - 4 + ischiumShiftMM, v: 110.0)
        bone += band(u: u, v: v, from: top, to: bottom, halfWidth: 10) * rho * 1.1
        // The pubic ramus: from the ischium's top medially.
        bone += band(u: u, v: v, from: (top.u - 6, top.v + 4), to: (top.u - 90, top.v - 10), halfWidth: 9) * rho * 0.8
        return bone
    }

    /// Metal of a hip replacement (g/cm² hydroxyapatite equivalent, like other implants).
    func metalLocal(u: Double, v: Double) -> Double {
        guard prosthesis else { return 0 }
        let (u, v) = unabducted(u: u, v: v)
        if hypot(u, v) < headRadiusMM - 2 { return 15 }
        let step = neckStep, len = hypot(step.u, step.v)
        let s = (u * step.u + v * step.v) / len, d = (-u * step.v + v * step.u) / len
        if s > 0 && s < projectedNeckLength && abs(d) < 7 { return 15 }
        let j = junction
        if v > j.v - 10 && v < j.v + 130 && abs(u - j.u) < 7 - (v - j.v) / 40 { return 15 }
        return 0
    }

    private func band(u: Double, v: Double, from a: (u: Double, v: Double), to b: (u: Double, v: Double), halfWidth: Double) -> Double {
        let du = b.u - a.u, dv = b.v - a.v, len2 = du * du + dv * dv
        let t = ((u - a.u) * du + (v - a.v) * dv) / len2
        guard t > 0 && t < 1 else { return 0 }
        let d = abs((u - a.u) * dv - (v - a.v) * du) / len2.squareRoot()
        return d < halfWidth ? 2 * (halfWidth * halfWidth - d * d).squareRoot() / (2 * halfWidth) : 0
    }

    private func smooth(_ t: Double) -> Double { max(0, min(1, t)) }

    private func unabducted(u: Double, v: Double) -> (Double, Double) {
        guard abductionDeg != 0 else { return (u, v) }
        let a = abductionDeg * .pi / 180
        // Abduction swings the shaft outwards: undo it by turning the point back.
        return (u * cos(a) - v * sin(a), u * sin(a) + v * cos(a))
    }

    // MARK: - On the table

    /// Table coordinates to the local frame.
    func local(x: Double, y: Double, midline: Double) -> (u: Double, v: Double) {
        let s = side == .left ? 1.0 : -1.0
        return ((x - midline) * s - headOffsetMM, y - headYMM)
    }

    func table(u: Double, v: Double, midline: Double) -> (x: Double, y: Double) {
        let (ua, va) = abducted(u: u, v: v)
        let s = side == .left ? 1.0 : -1.0
        return (midline + s * (ua + headOffsetMM), va + headYMM)
    }

    private func abducted(u: Double, v: Double) -> (Double, Double) {
        guard abductionDeg != 0 else { return (u, v) }
        let a = abductionDeg * .pi / 180
        return (u * cos(a) + v * sin(a), -u * sin(a) + v * cos(a))
    }

    /// All the hip's bone and metal at a table point: femur, pelvis, implant.
    func bone(x: Double, y: Double, midline: Double) -> Double {
        let (u, v) = local(x: x, y: y, midline: midline)
        guard abs(u) < 200 && v > -120 && v < 400 else { return 0 }
        let metal = metalLocal(u: u, v: v)
        return femurLocal(u: u, v: v) + pelvisLocal(u: u, v: v) + metal
    }

    /// The femur alone at a table point (the truth of an ROI over it).
    public func femur(x: Double, y: Double, midline: Double) -> Double {
        let (u, v) = local(x: x, y: y, midline: midline)
        return femurLocal(u: u, v: v)
    }

    /// The pelvis alone at a table point (what lies beside and over the femur).
    public func pelvis(x: Double, y: Double, midline: Double) -> Double {
        let (u, v) = local(x: x, y: y, midline: midline)
        guard abs(u) < 200 && v > -120 && v < 400 else { return 0 }
        return pelvisLocal(u: u, v: v)
    }

    /// Where the landmarks an analysis looks for lie on the table.
    public struct Landmarks: Sendable, Equatable {
        public var headCentre: (x: Double, y: Double)
        public var headRadiusMM: Double
        /// The neck's narrowest point on its axis, and the axis's direction (unit, head to shaft).
        public var neckWaist: (x: Double, y: Double)
        public var neckAxis: (x: Double, y: Double)
        public var neckWidthMM: Double
        /// The lowest point of the lesser trochanter.
        public var lesserTrochanterBottomY: Double
        /// The projected neck–shaft angle, degrees.
        public var projectedNeckShaftAngleDeg: Double
        public static func == (a: Landmarks, b: Landmarks) -> Bool {
            a.headCentre == b.headCentre && a.neckWaist == b.neckWaist && a.neckAxis == b.neckAxis && a.lesserTrochanterBottomY == b.lesserTrochanterBottomY
        }
    }

    public func landmarks(midline: Double) -> Landmarks {
        let step = neckStep, len = hypot(step.u, step.v)
        let w = waistS
        let waist = table(u: w * step.u / len, v: w * step.v / len, midline: midline)
        let head = table(u: 0, v: 0, midline: midline)
        let axis = (x: (waist.x - head.x) / w, y: (waist.y - head.y) / w)
        let j = junction
        let p = lesserTrochanterProtrusionMM, a = (p + 9) / 2
        // The lesser trochanter's bottom: the lowest point of its ellipse, turned with the femur.
        var bottom = -Double.infinity
        for k in 0..<360 {
            let t = Double(k) * .pi / 180
            let pt = table(u: j.u - shaftRadiusMM - p + a + a * cos(t), v: j.v + 34 + 13 * sin(t), midline: midline)
            bottom = max(bottom, pt.y)
        }
        // Between the neck towards the head and the shaft towards the knee.
        let projected = acos(-step.v / len) * 180 / .pi
        return Landmarks(headCentre: head, headRadiusMM: headRadiusMM, neckWaist: waist, neckAxis: axis, neckWidthMM: 2 * neckRadiusMM,
                         lesserTrochanterBottomY: bottom, projectedNeckShaftAngleDeg: projected)
    }
}
