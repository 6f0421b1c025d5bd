import Foundation

/// The lumbar spine and what lies around it, as the front view (AP) sees it: T11–L5 (or a
/// sixth lumbar vertebra) with bodies that widen caudally and narrow at the waist, disc
/// spaces, pedicles, spinous processes and facet joints over the bodies and the discs, ribs
/// on the thoracic vertebrae, the iliac crests entering from the sides near L4–L5, and the
/// sacrum below. Variants a clinic meets: scoliosis (a lateral curve that tilts the bodies),
/// axial rotation (posterior elements off-centre), an osteophyte, a sclerotic level, a
/// compression fracture, pedicle screws and rods.
///
/// All sizes in millimetres, densities in g/cm² of hydroxyapatite as the beam sees them (areal
/// density through the body). Sizes follow adult lumbar anatomy in round numbers (bodies 22–30
/// mm high and 34–50 mm wide in projection, discs 6–10 mm): docs/simulator.md. The scene
/// knows its truth: `truth()` integrates the spine's own bone over each vertebra's level
/// (between the middles of the discs above and below it), the region an ROI between disc
/// lines measures.
public struct APSpine: Sendable, Codable, Equatable {
    public enum Side: String, Sendable, Codable, CaseIterable { case left, right }

    public struct Vertebra: Sendable, Codable, Equatable {
        public var name: String
        /// Body height on the axis and half-width at the endplates.
        public var heightMM: Double
        public var halfWidthMM: Double
        /// The disc space below the body.
        public var discBelowMM: Double
        /// Areal density of the body's projection (trabecular and cortical bone together).
        public var bmd: Double
        /// Compression fracture: the fraction of the body's height lost. The mineral stays
        /// (compacted), so the body's areal density rises; the spine above shortens.
        public var heightLoss = 0.0
        /// A marginal osteophyte at the lower endplate on this side.
        public var osteophyte: Side?
        /// Sclerosis (degenerative endplate sclerosis, a bone island): density added over the body.
        public var sclerosisBMD = 0.0
        /// Pedicle screws, joined by rods to the next vertebra with screws.
        public var screws = false

        public init(name: String, heightMM: Double, halfWidthMM: Double, discBelowMM: Double, bmd: Double) {
            self.name = name; self.heightMM = heightMM; self.halfWidthMM = halfWidthMM; self.discBelowMM = discBelowMM; self.bmd = bmd
        }

        /// Structurally abnormal as ISCD counts it (a reason an analysis must exclude it).
        public var abnormality: String? {
            if screws { return "metal" }
            if heightLoss >= 0.2 { return "fracture" }
            if osteophyte != nil { return "osteophyte" }
            if sclerosisBMD > 0 { return "sclerosis" }
            return nil
        }
    }

    /// Cranial first: T11, T12, L1 … L5 (L6 in a transitional spine).
    public var vertebrae: [Vertebra]
    /// The top endplate of the first vertebra.
    public var topMM: Double
    /// The spine's axis across the table from the body's midline.
    public var offsetMM = 0.0
    /// Scoliosis: the axis bends sideways by up to this much (positive towards the patient's
    /// left), a bell centred at `scoliosisApexMM` with `scoliosisWidthMM` as its SD.
    public var scoliosisMM = 0.0
    public var scoliosisApexMM = 690.0
    public var scoliosisWidthMM = 60.0
    /// Axial rotation: positive turns the spinous processes to the patient's left.
    public var rotationDeg = 0.0
    public var posteriorElementsBMD = 0.3
    public var ribBMD = 0.5
    /// The iliac crests' highest point, below the bottom of the last-but-one vertebra (L4; L5
    /// of six): the pelvis holds the lowest lumbar vertebrae, so a fracture above moves the
    /// spine's top, not this relation. Nil: no pelvis in the scene.
    public var iliacCrestBelowMM: Double? = 4.5
    public var iliumBMD = 0.7
    public var sacrumBMD = 0.9

    public init(vertebrae: [Vertebra], topMM: Double) { self.vertebrae = vertebrae; self.topMM = topMM }

    /// An adult spine: T11–L5, `lumbarBMD` for L1…L5 (T11 and T12 a little below L1), body
    /// sizes scaled by `scale`, L1's top at `l1TopMM`.
    public static func adult(lumbarBMD: [Double] = [0.95, 1.0, 1.05, 1.08, 1.1], scale: Double = 1, l1TopMM: Double = 625,
                             sixLumbar: Bool = false) -> APSpine {
        // name, height, half-width, disc below
        var rows: [(String, Double, Double, Double)] = [("T11", 22, 17, 6), ("T12", 24, 18, 7), ("L1", 26, 20, 8), ("L2", 27, 21, 9),
                                                         ("L3", 28, 22.5, 9), ("L4", 28, 24, 9), ("L5", 27, 25, 8)]
        if sixLumbar { rows.insert(("L5", 27, 24.5, 9), at: 6); rows[7].0 = "L6" }
        let l1 = lumbarBMD.first ?? 1
        var bmds = [l1 - 0.06, l1 - 0.03] + lumbarBMD
        while bmds.count < rows.count { bmds.append(bmds.last ?? 1) }
        let vertebrae = rows.enumerated().map { i, r in
            Vertebra(name: r.0, heightMM: r.1 * scale, halfWidthMM: r.2 * scale, discBelowMM: r.3 * scale, bmd: bmds[i])
        }
        let aboveL1 = vertebrae.prefix(2).reduce(0) { $0 + $1.heightMM + $1.discBelowMM }
        var s = APSpine(vertebrae: vertebrae, topMM: l1TopMM - aboveL1)
        // The crests' top at the middle of the L4–L5 disc (the intercristal line; docs/simulator.md).
        s.iliacCrestBelowMM = vertebrae.dropLast().last.map { $0.discBelowMM / 2 }
        return s
    }

    // MARK: - Geometry

    /// The axis's x (relative to the body's midline) at y.
    public func axisX(_ y: Double) -> Double {
        let t = (y - scoliosisApexMM) / scoliosisWidthMM
        return offsetMM + scoliosisMM * exp(-t * t / 2)
    }

    /// The axis's slope dx/dy at y.
    func axisSlope(_ y: Double) -> Double {
        let t = (y - scoliosisApexMM) / scoliosisWidthMM
        return -scoliosisMM * t / scoliosisWidthMM * exp(-t * t / 2)
    }

    /// One vertebra placed: its centre, its tilt (radians, the axis's direction there) and
    /// its effective height and density.
    public struct Placed: Sendable, Equatable {
        public var index: Int
        public var name: String
        public var centreX: Double
        public var centreY: Double
        public var tilt: Double
        public var heightMM: Double
        public var halfWidthMM: Double
        public var discBelowMM: Double
        public var bodyBMD: Double
        public var topY: Double { centreY - heightMM / 2 }
        public var bottomY: Double { centreY + heightMM / 2 }

        /// Local coordinates: u across the body, v along the axis (down).
        func local(_ x: Double, _ y: Double) -> (u: Double, v: Double) {
            let dx = x - centreX, dy = y - centreY, c = cos(tilt), s = sin(tilt)
            return (dx * c - dy * s, dx * s + dy * c)
        }

        func point(u: Double, v: Double) -> (x: Double, y: Double) {
            let c = cos(tilt), s = sin(tilt)
            return (centreX + u * c + v * s, centreY - u * s + v * c)
        }
    }

    public var layout: [Placed] {
        var y = topMM
        return vertebrae.enumerated().map { i, v in
            let h = v.heightMM * (1 - min(0.8, max(0, v.heightLoss)))
            let cy = y + h / 2
            y += h + v.discBelowMM
            let compacted = v.bmd / (1 - 0.5 * min(0.8, max(0, v.heightLoss)))
            return Placed(index: i, name: v.name, centreX: axisX(cy), centreY: cy, tilt: atan(axisSlope(cy)), heightMM: h,
                          halfWidthMM: v.halfWidthMM, discBelowMM: v.discBelowMM, bodyBMD: compacted + v.sclerosisBMD)
        }
    }

    // MARK: - Densities

    /// The spine's own bone at (x, y), x from the body's midline: bodies, posterior elements,
    /// osteophytes. Not ribs, pelvis or metal.
    public func spineBone(x: Double, y: Double, layout: [Placed]) -> Double {
        var b = 0.0
        let shift = sin(rotationDeg * .pi / 180)
        for p in layout {
            guard abs(y - p.centreY) < p.heightMM / 2 + p.discBelowMM + 30 else { continue }
            let v = vertebrae[p.index]
            let (u, w) = p.local(x, y)
            let h2 = p.heightMM / 2
            // The body: narrower at the waist, corners rounded (3 mm), a denser cortical rim
            // at the sides (2 mm).
            if abs(w) <= h2 {
                let waist = 2.5 * (1 - (w / h2) * (w / h2))
                let half = p.halfWidthMM - waist
                if abs(u) <= half {
                    let du = abs(u) - (half - 3), dv = abs(w) - (h2 - 3)
                    if du <= 0 || dv <= 0 || du * du + dv * dv <= 9 {
                        b += p.bodyBMD * (half - abs(u) < 2 ? 1.2 : 1)
                    }
                }
            }
            // Posterior elements, moved sideways by axial rotation: pedicles (ovals near the
            // body's top), the spinous process (down from mid-body over the disc below), the
            // facet joints (at the disc below).
            let pe = posteriorElementsBMD
            for s in [-1.0, 1.0] {
                let pu = u - (s * (p.halfWidthMM - 9) + 20 * shift), pv = w - (-h2 + 9)
                if (pu * pu) / 16 + (pv * pv) / 36 <= 1 { b += pe }
                let fu = u - (s * 13 + 25 * shift), fv = w - (h2 + p.discBelowMM / 2)
                if (fu * fu) / 16 + (fv * fv) / 49 <= 1 { b += pe }
            }
            let su = u - 45 * shift, sLen = (p.discBelowMM + 14) / 2, sv = w - (h2 - 6 + sLen)
            if (su * su) / 25 + (sv * sv) / (sLen * sLen) <= 1 { b += pe }
            // An osteophyte: a beak at the lower endplate growing outwards towards the disc.
            if let side = v.osteophyte {
                let s: Double = side == .left ? 1 : -1
                let out = u * s - (p.halfWidthMM - 1)
                let reach = 8 * (w - (h2 - 8)) / 9
                if out > 0 && w <= h2 + 1.5 && reach > 0 && out <= reach { b += 1.2 }
            }
        }
        return b
    }

    /// Ribs (on the thoracic vertebrae), the ilia and the sacrum at (x, y).
    public func surroundingBone(x: Double, y: Double, layout: [Placed]) -> Double {
        var b = 0.0
        for p in layout where p.name.hasPrefix("T") {
            // A rib leaves the body's side at its upper half and runs outwards and down at
            // 20°; the lowest (T12, a floating rib) is short.
            let length = p.name == "T12" ? 75.0 : 115.0
            for s in [-1.0, 1.0] {
                let ox = p.centreX + s * (p.halfWidthMM + 1), oy = p.centreY - 2
                let dx = (x - ox) * s, dy = y - oy
                let along = dx * cos(0.35) + dy * sin(0.35), across = -dx * sin(0.35) + dy * cos(0.35)
                if along >= 0 && along <= length && abs(across) <= 4.5 * (1 - 0.3 * along / length) { b += ribBMD }
            }
        }
        if let below = iliacCrestBelowMM, let last = layout.last, layout.count >= 2 {
            let crest = layout[layout.count - 2].bottomY + below
            let a = abs(x - offsetMM)
            // The ilium: its upper edge rises outwards to the crest's highest point (115 mm
            // out, beyond the field); its inner edge, the sacroiliac joint, runs down and in.
            let top = crest + 0.003 * (115 - min(a, 115)) * (115 - min(a, 115))
            let inner = max(36, 52 - 0.3 * (y - crest))
            // (The wings end above the hip joints: the hip scans model their own pelvis.)
            if y >= top && y < crest + 100 && a >= inner && a < 150 { b += y - top < 3 ? iliumBMD + 0.3 : iliumBMD }
            // The sacrum below the last lumbar disc, narrowing downwards.
            let s1 = last.bottomY + last.discBelowMM
            if y >= s1 && y < s1 + 90 && a <= last.halfWidthMM + 2 - 0.3 * (y - s1) { b += sacrumBMD }
        }
        return b
    }

    /// Pedicle screws (over the pedicles) and the rods joining them: metal.
    public func metal(x: Double, y: Double, layout: [Placed]) -> Bool {
        let screwed = layout.filter { vertebrae[$0.index].screws }
        for p in screwed {
            let (u, w) = p.local(x, y)
            for s in [-1.0, 1.0] {
                let pu = u - s * (p.halfWidthMM - 9), pv = w - (-p.heightMM / 2 + 9)
                if pu * pu + pv * pv <= 16 { return true }
            }
        }
        for (a, b) in zip(screwed, screwed.dropFirst()) where b.index == a.index + 1 {
            for s in [-1.0, 1.0] {
                let top = a.topY + 9, bottom = b.topY + 9
                guard y >= top && y <= bottom else { continue }
                let t = (y - top) / (bottom - top)
                let rx = (a.centreX + s * (a.halfWidthMM - 6)) * (1 - t) + (b.centreX + s * (b.halfWidthMM - 6)) * t
                if abs(x - rx) <= 2.5 { return true }
            }
        }
        return false
    }

    // MARK: - Truth

    /// What a perfect analysis measures for one vertebra: the spine's own bone between the
    /// middles of the discs above and below (lines across the axis), within 15 mm of the body's
    /// sides.
    public struct Truth: Sendable, Codable, Equatable {
        public var name: String
        public var bmcG: Double
        public var areaCm2: Double
        public var bmdGCm2: Double { areaCm2 > 0 ? bmcG / areaCm2 : 0 }
        /// Why an analysis must exclude it, if it must.
        public var abnormality: String?
        /// The level's centre on the table (x relative to the midline).
        public var centreXMM: Double
        public var centreYMM: Double
    }

    /// The disc lines: for each vertebra, a point on the middle of the disc above and below
    /// and the axis direction there.
    func levelLines(_ layout: [Placed]) -> [(upper: (x: Double, y: Double, tilt: Double), lower: (x: Double, y: Double, tilt: Double))] {
        layout.enumerated().map { i, p in
            let top = p.point(u: 0, v: -p.heightMM / 2), bottom = p.point(u: 0, v: p.heightMM / 2)
            let upper: (x: Double, y: Double, tilt: Double)
            if i > 0 {
                let q = layout[i - 1], qb = q.point(u: 0, v: q.heightMM / 2)
                upper = ((qb.x + top.x) / 2, (qb.y + top.y) / 2, (q.tilt + p.tilt) / 2)
            } else {
                let d = p.discBelowMM / 2
                upper = (top.x - d * sin(p.tilt), top.y - d * cos(p.tilt), p.tilt)
            }
            let lower: (x: Double, y: Double, tilt: Double)
            if i + 1 < layout.count {
                let q = layout[i + 1], qt = q.point(u: 0, v: -q.heightMM / 2)
                lower = ((qt.x + bottom.x) / 2, (qt.y + bottom.y) / 2, (q.tilt + p.tilt) / 2)
            } else {
                let d = p.discBelowMM / 2
                lower = (bottom.x + d * sin(p.tilt), bottom.y + d * cos(p.tilt), p.tilt)
            }
            return (upper, lower)
        }
    }

    /// Integrates the spine's bone on a 0.25 mm grid over each level.
    public func truth(stepMM: Double = 0.25) -> [Truth] {
        let layout = self.layout
        let lines = levelLines(layout)
        return layout.enumerated().map { i, p in
            let (up, low) = lines[i]
            let reach = p.halfWidthMM + 15
            var bmc = 0.0, area = 0.0
            let y0 = min(up.y, low.y) - reach * 0.5, y1 = max(up.y, low.y) + reach * 0.5
            var y = y0
            while y < y1 {
                var x = p.centreX - reach - 10
                while x < p.centreX + reach + 10 {
                    // Below the upper line and above the lower one, along the local axis.
                    let aboveUpper = (x - up.x) * sin(up.tilt) + (y - up.y) * cos(up.tilt)
                    let belowLower = (x - low.x) * sin(low.tilt) + (y - low.y) * cos(low.tilt)
                    if aboveUpper >= 0 && belowLower < 0 && abs(p.local(x, y).u) <= reach {
                        let b = spineBone(x: x, y: y, layout: layout)
                        if b > 0 { bmc += b * stepMM * stepMM / 100; area += stepMM * stepMM / 100 }
                    }
                    x += stepMM
                }
                y += stepMM
            }
            return Truth(name: p.name, bmcG: bmc, areaCm2: area, abnormality: vertebrae[i].abnormality, centreXMM: p.centreX, centreYMM: p.centreY)
        }
    }
}
