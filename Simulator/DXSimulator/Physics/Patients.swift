import DXProtocol
import Foundation

/// A parametric patient lying supine on the table, head at small y: soft tissue of a chosen
/// thickness and fat fraction (varying from the patient's right to left and along the body),
/// the spine T11–L5 with its ribs, the iliac crests and the sacrum (`APSpine`), both hips with the
/// pelvis around them (`ProximalFemur`), the lateral spine T4–L4 with per-vertebra anterior, middle and posterior heights
/// (so Genant wedge, biconcave and crush fractures can be made), metal implants and patient
/// motion. Every number is the truth a test compares against; the physics turns it into
/// counts. Seen from the front (arm 0°) or from the side (arm 90°).
public struct PatientScene: Scene {
    public let spec: PatientSpec
    /// The spine's vertebrae placed once (the scene is sampled millions of times).
    let spineLayout: [APSpine.Placed]

    public init(_ spec: PatientSpec = PatientSpec()) { self.spec = spec; spineLayout = spec.spine.layout }

    public func projection(armAngleX10: Int16) -> any Scene {
        abs(Int(armAngleX10) - 900) < 50 ? LateralView(spec: spec) : APView(spec: spec, spineLayout: spineLayout)
    }

    public func composition(xUm: Int32, yUm: Int32) -> Composition {
        APView(spec: spec, spineLayout: spineLayout).composition(xUm: xUm, yUm: yUm)
    }

    /// The front view: the beam crosses the body from back to front.
    struct APView: Scene {
        let spec: PatientSpec
        let spineLayout: [APSpine.Placed]
        func composition(xUm: Int32, yUm: Int32) -> Composition {
            let (x, y) = spec.motion.apply(x: Double(xUm) / 1000, y: Double(yUm) / 1000)
            var c = spec.softTissue(x: x, y: y)
            guard c != .air else { return c }
            let sx = x - spec.midlineMM
            c.hydroxyapatite += spec.spine.spineBone(x: sx, y: y, layout: spineLayout)
            c.hydroxyapatite += spec.spine.surroundingBone(x: sx, y: y, layout: spineLayout)
            if spec.spine.metal(x: sx, y: y, layout: spineLayout) { c.hydroxyapatite += 15 }
            for hip in spec.hips { c.hydroxyapatite += hip.bone(x: x, y: y, midline: spec.midlineMM) }
            for m in spec.metal where m.contains(x: x, y: y) { c.hydroxyapatite += m.hydroxyapatiteEquivalent }
            return c
        }
    }

    /// The side view (VFA): the beam crosses the body from side to side, through more soft
    /// tissue; x runs from the patient's back to front.
    struct LateralView: Scene {
        let spec: PatientSpec
        func composition(xUm: Int32, yUm: Int32) -> Composition {
            let (x, y) = spec.motion.apply(x: Double(xUm) / 1000, y: Double(yUm) / 1000)
            var c = spec.softTissue(x: x, y: y, lateral: true)
            guard c != .air else { return c }
            let sx = x - spec.lateralSpineXMM
            // The lungs: in front of the thoracic bodies and above the diaphragm, part of the
            // path from side to side is air.
            if spec.lungAirFraction > 0, let diaphragm = spec.diaphragmYMM ?? spec.thoracolumbar.first(where: { $0.name == "T12" })?.centre.y {
                let front = (spec.thoracolumbar.first { $0.name == "T8" }.map { $0.offsetMM + $0.depthMM } ?? 30) + 8
                let inFront = max(0, min(1, (sx - front) / 15)), above = max(0, min(1, (diaphragm - y) / 20))
                let keep = 1 - spec.lungAirFraction * inFront * above
                c.lean *= keep
                c.fat *= keep
            }
            for v in spec.thoracolumbar {
                c.hydroxyapatite += v.bone(x: sx, y: y)
                if v.name.hasPrefix("T") { c.hydroxyapatite += v.ribs(x: sx, y: y, bmd: spec.lateralRibBMD) }
            }
            for scapula in spec.scapulae { c.hydroxyapatite += scapula.bone(x: sx, y: y) }
            for m in spec.metal + spec.lateralMetal where m.contains(x: x, y: y) { c.hydroxyapatite += m.hydroxyapatiteEquivalent }
            return c
        }
    }
}

/// Everything about a simulated patient, all in millimetres and g/cm². Codable so that a test
/// or `dexa-sim --phantom patient.json` can describe one (`{"patient": {...}}`).
public struct PatientSpec: Sendable, Codable, Equatable {
    /// Soft tissue (lean + fat) at the body's thickest, front view (g/cm²).
    public var softTissue = 18.0
    /// Side view: the beam crosses the body's width.
    public var lateralSoftTissue = 24.0
    /// Fat fraction of the soft tissue at the patient's right (small x) and left.
    public var fatFractionRight = 0.3
    public var fatFractionLeft = 0.3
    /// The soft tissue's thickness varies along the body by this fraction (a slow wave: the
    /// waist, the abdomen, the pelvis).
    public var alongBodyVariation = 0.06
    /// Body half-width (front view) and half-depth (side view).
    public var halfWidthMM = 170.0
    /// The body's half-width at the hips (front view), when it differs from the waist's: the
    /// outline widens from 780 mm to 880 mm down the body.
    public var hipHalfWidthMM: Double? = 200
    public var halfDepthMM = 120.0
    public var midlineMM = 200.0
    /// The body lies from `topMM` (shoulders) to `bottomMM` (knees) along y.
    public var topMM = 250.0
    public var bottomMM = 1400.0
    /// T11–L5 with ribs, iliac crests and sacrum, as the front view sees them.
    public var spine = APSpine.adult()
    public var hips: [Hip] = [Hip(side: .right), Hip(side: .left)]
    /// T4–L4, for the lateral view.
    public var thoracolumbar: [LateralVertebra] = PatientSpec.standardThoracolumbar()
    /// Where the vertebral bodies' posterior edge lies in the side view.
    public var lateralSpineXMM = 170.0
    /// Both ribs of a thoracic level where they cross the side view (g/cm²).
    public var lateralRibBMD = 0.3
    /// Side view: the share of the side-to-side path that is air in front of the thoracic
    /// bodies above the diaphragm (the lungs; 0: none).
    public var lungAirFraction = 0.0
    /// Side view: where the lungs end (the diaphragm's dome; nil: the middle of T12).
    public var diaphragmYMM: Double?
    /// Side view: the shoulder blades over the upper thoracic spine.
    public var scapulae: [LateralScapula] = []
    public var metal: [MetalImplant] = []
    /// Metal only the side view sees where it is (a necklace, a navel piercing), in its
    /// coordinates.
    public var lateralMetal: [MetalImplant] = []
    public var motion = Motion()

    public init() {}

    /// T4–L4 (13 bodies), none fractured, as an adult's: body heights from 16 mm (T4) to 27 mm
    /// (L4) and depths from 25 to 39 mm, discs from 4 to 8 mm, times `scale`; the thoracic
    /// spine curved backwards by `kyphosisMM` at its middle (the bodies there lie that far
    /// behind the line from T4 to T12) and the lumbar forwards by `lordosisMM`, each body tilted
    /// with the curve. Sources and ranges: docs/simulator.md.
    public static func standardThoracolumbar(top: Double = 335, scale: Double = 1, kyphosisMM: Double = 0, lordosisMM: Double = 0,
                                             bmd: Double = 0.9, concavityMM: Double = 0) -> [LateralVertebra] {
        let names = (4...12).map { "T\($0)" } + (1...4).map { "L\($0)" }
        var y = top
        var bodies: [LateralVertebra] = names.enumerated().map { i, name in
            let h = (16 + Double(i) * 11.0 / 12) * scale
            defer { y += h + (4 + Double(i) * 4.0 / 12) * scale }
            // Healthy endplates are concave: each dips `concavityMM` into the body at its middle.
            var v = LateralVertebra(name: name, topMM: y, depthMM: (25 + Double(i) * 1.2) * scale, anteriorMM: h, middleMM: h - 2 * concavityMM,
                                    posteriorMM: h, bmd: bmd * (0.92 + 0.01 * Double(i)))
            v.widthMM = (30 + Double(i) * 1.6) * scale
            return v
        }
        // The curves: a half sine over the thoracic bodies (backwards, x smaller) and over the
        // lumbar ones (forwards); each body tilts with the curve's slope at its centre.
        func bend(_ range: Range<Int>, _ depth: Double) {
            guard let first = range.first, let last = range.last, depth != 0 else { return }
            let y0 = bodies[first].topMM, y1 = bodies[last].topMM + bodies[last].anteriorMM
            for i in range {
                let yc = bodies[i].topMM + bodies[i].anteriorMM / 2, u = (yc - y0) / (y1 - y0)
                bodies[i].offsetMM += depth * sin(.pi * u)
                bodies[i].tiltDegrees -= atan(depth * .pi / (y1 - y0) * cos(.pi * u)) * 180 / .pi
            }
        }
        bend(0..<9, -kyphosisMM)
        bend(9..<13, lordosisMM)
        return bodies
    }

    /// Soft tissue at a point: an elliptical body cross-section, thinner towards the sides.
    func softTissue(x: Double, y: Double, lateral: Bool = false) -> Composition {
        guard y >= topMM && y < bottomMM else { return .air }
        var half = lateral ? halfDepthMM : halfWidthMM
        if !lateral, let hips = hipHalfWidthMM {
            let t = max(0, min(1, (y - 780) / 100))
            half += (hips - halfWidthMM) * t * t * (3 - 2 * t)
        }
        // Side view: the vertebral bodies lie in the back third, their posterior edge 70 mm
        // in from the patient's back.
        let centre = lateral ? lateralSpineXMM - 70 + halfDepthMM : midlineMM
        let d = (x - centre) / half
        guard abs(d) < 1 else { return .air }
        let along = 1 + alongBodyVariation * sin(2 * .pi * (y - topMM) / 400)
        let total = (lateral ? lateralSoftTissue : softTissue) * along * (0.35 + 0.65 * (1 - d * d).squareRoot())
        // Fat fraction from the patient's right (x small) to left.
        let t = min(1, max(0, (x - (midlineMM - halfWidthMM)) / (2 * halfWidthMM)))
        let ff = fatFractionRight + (fatFractionLeft - fatFractionRight) * t
        return Composition(hydroxyapatite: 0, lean: total * (1 - ff), fat: total * ff)
    }

    /// A proximal femur with the pelvis around it (`ProximalFemur`).
    public typealias Hip = ProximalFemur

    /// A vertebral body in the side view: `depthMM` from its posterior edge (x = 0, moved by
    /// `offsetMM`) to the anterior; its height varies from posterior through middle to anterior
    /// (a parabola through the three), centred on the body's mid-line, and the whole body is
    /// turned by `tiltDegrees` about its centre (the spine's curve; heights are measured along
    /// the body's own axis). Genant: wedge = anterior shorter, biconcave = middle shorter, crush
    /// = all shorter; grade 1 is 20–25 %, 2 is 25–40 %, 3 over 40 % loss of height.
    public struct LateralVertebra: Sendable, Codable, Equatable {
        public var name: String
        public var topMM: Double
        public var depthMM: Double
        public var anteriorMM: Double
        public var middleMM: Double
        public var posteriorMM: Double
        public var bmd: Double
        public var offsetMM = 0.0
        /// Positive: the anterior edge lies further down the table (y larger) than the posterior.
        public var tiltDegrees = 0.0
        /// The truth of a fracture made by `fractured`: its type and Genant grade.
        public var fracture: Fracture?
        public var grade = 0
        /// Scoliosis seen from the side: the body turned about the beam's perpendicular by this
        /// much, so that each endplate's edge is spread over `widthMM` × tan(tilt) (the double
        /// contour readers see) centred on where it lies untilted.
        public var coronalTiltDegrees = 0.0
        /// The body's width from side to side (along the beam).
        public var widthMM = 40.0
        /// Osteophytes at both anterior corners: spurs this long along the front edge into
        /// the disc (and 0.7 times it forwards); not part of the body's heights.
        public var osteophyteMM = 0.0

        public enum Fracture: String, Sendable, Codable, CaseIterable { case wedge, biconcave, crush }

        public init(name: String, topMM: Double, depthMM: Double, anteriorMM: Double, middleMM: Double, posteriorMM: Double, bmd: Double) {
            self.name = name; self.topMM = topMM; self.depthMM = depthMM
            self.anteriorMM = anteriorMM; self.middleMM = middleMM; self.posteriorMM = posteriorMM; self.bmd = bmd
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            topMM = try c.decode(Double.self, forKey: .topMM)
            depthMM = try c.decode(Double.self, forKey: .depthMM)
            anteriorMM = try c.decode(Double.self, forKey: .anteriorMM)
            middleMM = try c.decode(Double.self, forKey: .middleMM)
            posteriorMM = try c.decode(Double.self, forKey: .posteriorMM)
            bmd = try c.decode(Double.self, forKey: .bmd)
            offsetMM = try c.decodeIfPresent(Double.self, forKey: .offsetMM) ?? 0
            tiltDegrees = try c.decodeIfPresent(Double.self, forKey: .tiltDegrees) ?? 0
            fracture = try c.decodeIfPresent(Fracture.self, forKey: .fracture)
            grade = try c.decodeIfPresent(Int.self, forKey: .grade) ?? 0
            coronalTiltDegrees = try c.decodeIfPresent(Double.self, forKey: .coronalTiltDegrees) ?? 0
            widthMM = try c.decodeIfPresent(Double.self, forKey: .widthMM) ?? 40
            osteophyteMM = try c.decodeIfPresent(Double.self, forKey: .osteophyteMM) ?? 0
        }

        /// The height loss of each grade as made here: inside Genant's bands, 2–5 points from
        /// their edges.
        public static let gradeLoss = [0.0, 0.225, 0.32, 0.5]

        /// The same vertebra with a fracture of the given Genant grade (1 to 3).
        public func fractured(_ kind: Fracture, grade: Int) -> LateralVertebra {
            let g = max(0, min(3, grade))
            let loss = Self.gradeLoss[g]
            var v = self
            let h = max(anteriorMM, middleMM, posteriorMM)
            switch kind {
            case .wedge: v.anteriorMM = h * (1 - loss)
            case .biconcave: v.middleMM = h * (1 - loss)
            case .crush: v.anteriorMM = h * (1 - loss); v.middleMM = h * (1 - loss); v.posteriorMM = h * (1 - loss)
            }
            v.fracture = g > 0 ? kind : nil
            v.grade = g
            return v
        }

        /// The body's height at a fraction t (0 posterior, 1 anterior) of its depth.
        public func height(at t: Double) -> Double {
            // Lagrange through (0, posterior), (0.5, middle), (1, anterior).
            posteriorMM * (2 * t - 1) * (t - 1) + middleMM * 4 * t * (1 - t) + anteriorMM * t * (2 * t - 1)
        }

        /// The body's centre, relative to the spine's line (x) and on the table (y).
        public var centre: (x: Double, y: Double) { (offsetMM + depthMM / 2, topMM + max(anteriorMM, middleMM, posteriorMM) / 2) }

        /// Body coordinates of a point: across (−depth/2 posterior … +depth/2 anterior) and
        /// along the body's axis (towards larger y).
        func local(x: Double, y: Double) -> (u: Double, v: Double) {
            let c = centre, a = tiltDegrees * .pi / 180
            let dx = x - c.x, dy = y - c.y
            return (dx * cos(a) + dy * sin(a), -dx * sin(a) + dy * cos(a))
        }

        func bone(x: Double, y: Double) -> Double {
            let (u, v) = local(x: x, y: y)
            let t = u / depthMM + 0.5
            var spur = 0.0
            if osteophyteMM > 0 {
                // A triangle at each anterior corner: along the front edge from 3 mm inside the
                // endplate to `osteophyteMM` past it, and 0.7 × as far forwards.
                let edge = anteriorMM / 2, length = osteophyteMM
                let du = u - (depthMM / 2 - 2), dv = abs(v) - (edge - 3)
                if du >= 0, dv >= 0, du / (0.7 * length + 2) + dv / (length + 3) <= 1 { spur = bmd }
            }
            guard t >= 0 && t < 1 else { return spur }
            let half = height(at: t) / 2
            let ramp = widthMM * tan(abs(coronalTiltDegrees) * .pi / 180)
            // The share of the body's width the beam crosses inside it.
            let inside = ramp > 0.01 ? max(0, min(1, (half - abs(v)) / ramp + 0.5)) : (abs(v) < half ? 1 : 0)
            return max(spur, bmd * inside)
        }

        /// Both ribs of this level where the side view sees them: a band 10 mm wide from 60 mm
        /// behind the body, through its upper posterior corner (where the rib's head meets it),
        /// forwards and down at about 30° across the body, the disc below and 70 mm past the
        /// body's front.
        func ribs(x: Double, y: Double, bmd: Double) -> Double {
            let (u, v) = local(x: x, y: y)
            let h = max(anteriorMM, middleMM, posteriorMM)
            let u0 = -depthMM / 2 - 60, v0 = -h / 2
            let along = u - u0
            guard along >= 0 && along < depthMM + 130 else { return 0 }
            let mid = v0 + (along - 60) * 0.55
            return abs(v - mid) < 5 ? bmd : 0
        }
    }

    /// A shoulder blade in the side view: a plate of `bmd` g/cm² between its posterior border
    /// (x = `posteriorMM` from the bodies' posterior line) and an anterior border running from
    /// `anteriorTopMM` at `topMM` to `anteriorBottomMM` at `bottomMM` (its lateral border,
    /// slanting across the upper thoracic bodies), tapering to a point at the bottom.
    public struct LateralScapula: Sendable, Codable, Equatable {
        public var topMM: Double
        public var bottomMM: Double
        public var posteriorMM: Double
        public var anteriorTopMM: Double
        public var anteriorBottomMM: Double
        public var bmd: Double

        public init(topMM: Double, bottomMM: Double, posteriorMM: Double, anteriorTopMM: Double, anteriorBottomMM: Double, bmd: Double) {
            self.topMM = topMM; self.bottomMM = bottomMM; self.posteriorMM = posteriorMM
            self.anteriorTopMM = anteriorTopMM; self.anteriorBottomMM = anteriorBottomMM; self.bmd = bmd
        }

        func bone(x: Double, y: Double) -> Double {
            guard y >= topMM, y < bottomMM, bottomMM > topMM else { return 0 }
            let t = (y - topMM) / (bottomMM - topMM)
            let front = anteriorTopMM + (anteriorBottomMM - anteriorTopMM) * t
            // The lower angle: the plate narrows to the anterior border over its last third.
            let back = t < 2.0 / 3 ? posteriorMM : posteriorMM + (front - posteriorMM) * (t - 2.0 / 3) * 3
            return x >= back && x < front ? bmd : 0
        }
    }

    /// Metal (a screw, a prosthesis): nearly opaque, represented as a large areal density of
    /// hydroxyapatite (15 g/cm² attenuates about as much as 4 mm of titanium in the high
    /// window), since the ICD's materials are the only ones the physics tables hold.
    public struct MetalImplant: Sendable, Codable, Equatable {
        public var name: String
        public var xMM: [Double]
        public var yMM: [Double]
        public var hydroxyapatiteEquivalent = 15.0

        public init(name: String, xMM: [Double], yMM: [Double]) { self.name = name; self.xMM = xMM; self.yMM = yMM }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            xMM = try c.decode([Double].self, forKey: .xMM)
            yMM = try c.decode([Double].self, forKey: .yMM)
            hydroxyapatiteEquivalent = try c.decodeIfPresent(Double.self, forKey: .hydroxyapatiteEquivalent) ?? 15
        }

        func contains(x: Double, y: Double) -> Bool {
            guard xMM.count == 2, yMM.count == 2 else { return false }
            return x >= min(xMM[0], xMM[1]) && x < max(xMM[0], xMM[1]) && y >= min(yMM[0], yMM[1]) && y < max(yMM[0], yMM[1])
        }
    }

    /// The patient moves: from `fromYMM` on (the scan line that reaches that y, the table
    /// moving head to foot), the body is shifted by `shiftXMM` across the table and rotated
    /// by `rotationDegrees` about (midline, fromYMM).
    public struct Motion: Sendable, Codable, Equatable {
        public var fromYMM: Double?
        public var shiftXMM = 0.0
        public var rotationDegrees = 0.0

        public init(fromYMM: Double? = nil, shiftXMM: Double = 0, rotationDegrees: Double = 0) {
            self.fromYMM = fromYMM; self.shiftXMM = shiftXMM; self.rotationDegrees = rotationDegrees
        }

        /// Where the point that the beam sees at (x, y) was before the patient moved.
        func apply(x: Double, y: Double) -> (Double, Double) {
            guard let from = fromYMM, y >= from else { return (x, y) }
            var px = x - shiftXMM, py = y
            if rotationDegrees != 0 {
                let a = -rotationDegrees * .pi / 180, cx = 200.0, cy = from
                let dx = px - cx, dy = py - cy
                px = cx + dx * cos(a) - dy * sin(a)
                py = cy + dx * sin(a) + dy * cos(a)
            }
            return (px, py)
        }
    }
}
