import DXDecomposition
import Foundation

/// The proximal femur analysis: find the shaft, the femoral head and the neck's axis, place
/// the neck box across the neck at its narrowest, and measure the neck, the trochanter, the
/// intertrochanteric region, the total hip and Ward's area. Every size is in millimetres
/// (`Parameters`; docs/analysis.md gives each one's source or says it is our choice).
///
/// 1. Bone: the half-maximum rule, as for the spine (`BoneMap.boneMask`).
/// 2. The shaft: in the field's lowest `shaftFitMM` the runs of bone followed from row to row;
///    of those shaped like a tube (a cortex round a canal: most mineral at the edges, which the
///    ischium and the pubic ramus are not) the one with the most mineral; its centres fitted by a line.
/// 3. The head: a circle Hough transform on the bone image's edges above the shaft, each edge
///    voting along its gradient (into the bone) at radii 16–40 mm: the head's free lower arc and
///    the acetabular roof's outer arc share a centre. The radius: the median distance at which
///    bone ends along rays into the head's free arc (below and medial), 16–32 mm.
///    A head lateral of the shaft is the other hip.
/// 4. The neck's axis: from the head's centre, the direction in which the neck's cross-sections
///    are centred (the least squared offset of their midpoints), refined as the line through
///    those midpoints (the axis of symmetry, ISCD atlas). Its narrowest cross-section is the waist.
/// 5. The neck box: `neckBoxAlongMM` along the axis by `neckBoxAcrossMM` across it, centred at
///    the waist (Hologic's default box is 49 × 15 pixels, ISCD atlas); its bone is the neck's
///    own, connected inside the box to the waist (a separate ischium or trochanter is left out).
/// 6. The lesser trochanter: where the femur's medial edge first leaves the shaft's, going up;
///    how far it stands out measures the leg's rotation.
/// 7. The total hip: the femur's bone from a line across the neck at the box's head-side edge
///    down to a line across the shaft `totalBelowLesserTrochanterMM` below the lesser
///    trochanter (ISCD atlas, Hologic: "10 pixels below"). Trochanter and intertrochanter are
///    divided by a line from the box's lateral edge on the neck axis to the base of the greater
///    trochanter (where the lateral edge becomes the shaft's); the neck box's bone is the neck.
///    Total = neck + trochanter + intertrochanter, as Hologic reports them.
/// 8. Ward's area: the `wardsSideMM` square of least mean bone, all of it in the total hip,
///    near the neck box's lateral edge (Radiology 2003;228:620); shown, never diagnostic.
public enum HipAnalysis {
    public struct Parameters: Sendable, Equatable {
        public var minimumThresholdGCm2 = 0.08
        public var noiseSigmas = 5.0
        /// The shaft is fitted over the field's lowest this many millimetres of lines.
        public var shaftFitMM = 25.0
        /// The femoral head's radius is looked for in this range (adult heads 40–52 mm across).
        public var headRadiusMM: ClosedRange<Double> = 16...32
        /// The neck box: along the neck's axis, and across it.
        public var neckBoxAlongMM = 15.0
        public var neckBoxAcrossMM = 49.0
        /// The total hip's lower edge below the lesser trochanter.
        public var totalBelowLesserTrochanterMM = 10.0
        public var wardsSideMM = 10.0
        /// The femur's medial (lateral) edge has left the shaft's when it lies this far beyond it
        /// for three rows running.
        public var edgeDepartureMM = 2.0
        /// How far below the departure the lesser trochanter's lower end is followed (its
        /// taper: 6–7 mm in the hips turned inwards of the study, docs/analysis.md).
        public var lesserTrochanterTaperMM = 10.0
        /// Positioning: the lesser trochanter standing out beyond the shaft's medial edge by more
        /// than this (the leg turned outwards), the shaft at more than this to the scan.
        public var lesserTrochanterLimitMM = 8.0
        public var shaftAngleLimitDeg = 5.0
        /// Positioning: soft tissue the field must hold beside the femur's lateral edge (the
        /// greater trochanter). Hologic sets the total hip box 5 pixels out from the bone on
        /// every side but the bottom (ISCD DXA atlas, "Total hip region of interest
        /// incorrect/Hologic"), so the field holds at least that much tissue beside the
        /// trochanter; with less, the soft-tissue reference under the trochanter's rows has
        /// nothing on that side to stand on (docs/analysis.md, "Hips").
        public var lateralTissueMM = 5.0
        /// Metal: pixels of at least this bone-mineral equivalent or opaque, covering this. The
        /// smallest hip fixation, one cannulated screw (6.5 mm by 50 mm or more), covers over
        /// 300 mm² in projection; a few starved pixels where the head and the acetabulum
        /// overlap under thick tissue do not make a prosthesis.
        public var metalGCm2 = 3.0
        public var metalAreaMM2 = 200.0

        public init() {}
    }

    /// Measures a hip scan. `side` is the scan's region (`left_hip`, `right_hip`) when it has
    /// one; a scan of another region is refused, and so is one whose femur faces the other way.
    /// `correction`: a technologist's move of the neck box along the neck's axis (the total
    /// hip's medial edge, the box's, moves with it, as on Hologic's).
    public static func measure(_ scan: DecomposedScan, _ p: Parameters = Parameters(),
                               correction: ROICorrection? = nil) throws(HipAnalysisError) -> HipMeasurement {
        if let region = scan.provenance.region, let why = correction?.problem(site: region) { throw .correction(why) }
        let side: String
        switch scan.provenance.region {
        case "left_hip": side = "left"
        case "right_hip": side = "right"
        case let other?: throw .notAHip(other.replacingOccurrences(of: "_", with: " "))
        case nil: throw .notAHip("unnamed")
        }
        // Pixels of 0.1–100 mm: the hip's searches walk the image in half-pixel steps over
        // tens of millimetres (a finer image is no DX-1 scan).
        if let problem = scan.geometryProblem(pixelMM: 0.1...100, minimumLines: 8) { throw .impossibleGeometry(problem) }
        let map = BoneMap(scan)
        let noise = BoneMap.softTissueNoise(scan)
        let (mask, threshold) = map.boneMask(noise: noise, minimumGCm2: p.minimumThresholdGCm2, sigmas: p.noiseSigmas)
        let lat: Double = side == "left" ? 1 : -1
        let h = Hip(map: map, mask: mask, lat: lat)

        // Metal anywhere over the hip: a replacement or a fixation.
        var metal = 0
        for i in map.bone.indices where map.opaque[i] || (map.bone[i].isFinite && Double(map.bone[i]) >= p.metalGCm2) { metal += 1 }
        let metalArea = Double(metal) * map.dx * map.dy
        if metalArea >= p.metalAreaMM2 { throw .metal(metalArea) }

        let shaft = try h.findShaft(p)
        let head = try h.findHead(shaft: shaft, p)
        let neck = try h.findNeck(head: head, shaft: shaft, p)

        var warnings: [AnalysisWarning] = []
        var rois: [HipROIMeasure] = []
        var pixels: [String: [Int]] = [:]
        let e = neck.direction, n = (x: -e.y, y: e.x)
        func along(_ x: Double, _ y: Double) -> Double { (x - neck.origin.x) * e.x + (y - neck.origin.y) * e.y }
        func across(_ x: Double, _ y: Double) -> Double { (x - neck.origin.x) * n.x + (y - neck.origin.y) * n.y }
        let boxS = neck.waistS + (correction?.neckBoxShiftMM ?? 0)
        let s0 = boxS - p.neckBoxAlongMM / 2, s1 = boxS + p.neckBoxAlongMM / 2, half = p.neckBoxAcrossMM / 2
        func point(_ s: Double, _ d: Double) -> TablePoint {
            TablePoint(neck.origin.x + s * e.x + d * n.x, neck.origin.y + s * e.y + d * n.y)
        }

        // The neck box: the neck's own bone inside it.
        let waist = point(neck.waistS, 0)
        // Within the box, the neck's own bone: connected to the waist and no farther from the
        // axis than the neck's half-width and a few millimetres (the trochanter or the ischium
        // reaching into the box's ends is left out, as the ISCD atlas asks).
        let neckReach = min(half, neck.widthMM / 2 + 4)
        let neckPixels = h.fill(from: point(boxS, 0)) { x, y in
            let s = along(x, y), d = across(x, y)
            return s >= s0 && s <= s1 && abs(d) <= neckReach
        }
        if boxS != neck.waistS && neckPixels.isEmpty {
            throw .correction(String(format: "the neck box moved %+.1f mm along the neck holds no bone of the neck", boxS - neck.waistS))
        }
        pixels["neck"] = neckPixels
        let boxYs = [point(s0, -half), point(s1, -half), point(s1, half), point(s0, half)].map(\.yMM)
        let s0Top = boxYs.min() ?? waist.yMM
        rois.append(h.roi("neck", neckPixels, missingOver: (top: s0Top, bottom: boxYs.max() ?? waist.yMM)))

        // The lesser trochanter and the total hip's lower edge.
        let lesser = h.lesserTrochanter(shaft: shaft, neckWaistY: waist.yMM, p)
        if let prominence = lesser?.prominenceMM, prominence > p.lesserTrochanterLimitMM {
            warnings.append(AnalysisWarning(code: "femur_rotated",
                                            message: String(format: "the lesser trochanter stands out %.0f mm beyond the shaft: the leg is turned outwards (rotate it 15–25° inwards, foot in the brace)", prominence),
                                            value: prominence, unit: "mm"))
        }
        let shaftAngle = atan(shaft.slope) * 180 / .pi * lat
        if abs(shaftAngle) > p.shaftAngleLimitDeg {
            warnings.append(AnalysisWarning(code: "shaft_not_straight",
                                            message: String(format: "the femoral shaft lies at %.0f° to the scan (the leg %@): straighten it parallel to the table", abs(shaftAngle), shaftAngle > 0 ? "abducted" : "adducted"),
                                            value: shaftAngle, unit: "deg"))
        }
        let down = shaft.direction
        var bottomCut: [TablePoint]?
        var trochanterLine: [TablePoint]?
        var wardsBox: [TablePoint]?
        let lastPresentY = (0..<map.rows).last { map.rowPresent[$0] }.map { map.y($0) } ?? map.y0
        var totalReason: String?
        if let lesser {
            let yCut = lesser.bottomY + p.totalBelowLesserTrochanterMM * down.y
            let b = (x: shaft.x(atY: yCut), y: yCut)
            let perp = (x: -down.y, y: down.x)
            bottomCut = [TablePoint(b.x - 40 * perp.x, b.y - 40 * perp.y), TablePoint(b.x + 40 * perp.x, b.y + 40 * perp.y)]
            if yCut > lastPresentY - map.dy {
                totalReason = "the scan ends above the total hip's lower edge (10 mm below the lesser trochanter)"
            } else {
                let seed = TablePoint(b.x - 3 * down.x, b.y - 3 * down.y)
                // Beside the neck nothing is femur: the acetabulum's rim or the ischium may touch it.
                let besideNeck = neck.widthMM / 2 + 3
                let total = h.fill(from: seed) { x, y in
                    let s = along(x, y)
                    return s >= s0 && (s > s1 + 5 || abs(across(x, y)) <= besideNeck) && (x - b.x) * down.x + (y - b.y) * down.y <= 0
                }
                // The trochanteric line: from the box's lateral edge on the axis to the greater
                // trochanter's base.
                let p1 = point(s1, 0)
                let base = h.greaterTrochanterBase(shaft: shaft, fromY: yCut, toY: waist.yMM, p)
                let p2 = base ?? point(s1 + 25, 0)
                if base != nil { trochanterLine = [p1, p2] }
                let neckSet = Set(neckPixels)
                func aboveLine(_ x: Double, _ y: Double) -> Bool {
                    // The side of the line p1→p2 that the point straight above p2 lies on.
                    let cross = { (qx: Double, qy: Double) in (p2.xMM - p1.xMM) * (qy - p1.yMM) - (p2.yMM - p1.yMM) * (qx - p1.xMM) }
                    return cross(x, y) * cross(p2.xMM, p2.yMM - 30) > 0
                }
                var trochanter: [Int] = [], inter: [Int] = []
                for i in total where base != nil && !neckSet.contains(i) {
                    let x = map.x(i % map.columns), y = map.y(i / map.columns)
                    if aboveLine(x, y) { trochanter.append(i) } else { inter.append(i) }
                }
                let totalPixels = Array(Set(total).union(neckSet)).sorted()
                // Lines missing anywhere from the top of the femur in the total hip to its lower
                // edge make all three incomplete (a missing line cuts a fill short).
                let totalRows = (top: min(s0Top, totalPixels.first.map { map.y($0 / map.columns) } ?? s0Top), bottom: yCut)
                if base != nil {
                    pixels["trochanter"] = trochanter
                    pixels["intertrochanter"] = inter
                    rois.append(h.roi("trochanter", trochanter, missingOver: totalRows))
                    rois.append(h.roi("intertrochanter", inter, missingOver: totalRows))
                } else {
                    warnings.append(AnalysisWarning(code: "trochanter_line_not_found",
                                                    message: "the greater trochanter's base was not found: no trochanter or intertrochanter region"))
                }
                pixels["total_hip"] = totalPixels
                rois.append(h.roi("total_hip", totalPixels, missingOver: totalRows))
                // The femur's lateral edge against the field's lateral edge.
                let lateralEdge = lat > 0 ? map.x(map.columns - 1) + map.dx / 2 : map.x(0) - map.dx / 2
                let margin = totalPixels.map { lat * (lateralEdge - map.x($0 % map.columns)) - map.dx / 2 }.min() ?? .infinity
                if margin < p.lateralTissueMM {
                    warnings.append(AnalysisWarning(code: "trochanter_at_field_edge",
                                                    message: String(format: "the femur comes within %.1f mm of the field's lateral edge: the total hip needs %.0f mm of soft tissue beside the greater trochanter (move the field %.0f mm laterally and scan again)",
                                                                    max(0, margin), p.lateralTissueMM, p.lateralTissueMM - max(0, margin) + 10),
                                                    value: max(0, margin), unit: "mm"))
                }
                // The pelvis joined to the femur below the neck: the fill ran into it.
                let medialLimit = shaft.radius + (lesser.prominenceMM) + 12
                if total.contains(where: { i in
                    let x = map.x(i % map.columns), y = map.y(i / map.columns)
                    return y > waist.yMM + neck.widthMM / 2 && lat * (x - shaft.x(atY: y)) < -medialLimit
                }) {
                    warnings.append(AnalysisWarning(code: "pelvis_touches_femur",
                                                    message: "the ischium touches the femur below the neck: the total hip may include pelvis (check the outline)"))
                }
                // Ward's area.
                let totalSet = Set(totalPixels)
                var best: (mean: Double, s: Double, d: Double, pixels: [Int])?
                let w = p.wardsSideMM / 2
                var s = s1 - 5
                while s <= s1 + 15 {
                    var d = -neck.widthMM / 2 + w
                    while d <= neck.widthMM / 2 - w {
                        let centre = point(s, d)
                        let square = h.pixels(near: centre, within: w * 1.5, along: (s - w)...(s + w), across: (d - w)...(d + w),
                                              along: along, across: across)
                        if !square.isEmpty, square.count >= Int(0.8 * p.wardsSideMM * p.wardsSideMM / (map.dx * map.dy)),
                           square.allSatisfy({ totalSet.contains($0) }) {
                            let mean = square.reduce(0.0) { $0 + Double(map.bone[$1]) } / Double(square.count)
                            if best == nil || mean < best?.mean ?? .infinity { best = (mean, s, d, square) }
                        }
                        d += 1
                    }
                    s += 1
                }
                if let best {
                    wardsBox = [point(best.s - w, best.d - w), point(best.s + w, best.d - w), point(best.s + w, best.d + w), point(best.s - w, best.d + w)]
                    pixels["wards"] = best.pixels
                    let ys = wardsBox?.map(\.yMM) ?? []
                    rois.append(h.roi("wards", best.pixels, missingOver: (top: ys.min() ?? 0, bottom: ys.max() ?? 0)))
                }
            }
        } else {
            totalReason = "the lesser trochanter was not found (is the scan long enough below it?)"
        }
        if let totalReason {
            warnings.append(AnalysisWarning(code: "total_hip_not_measured", message: "no total hip: \(totalReason)"))
        }
        // Landmarks out of the field, lines missing.
        let head0 = map.x(0), head1 = map.x(map.columns - 1)
        let firstPresentY = (0..<map.rows).first { map.rowPresent[$0] }.map { map.y($0) } ?? map.y0
        if head.x - head.radius < head0 - 2 || head.x + head.radius > head1 + 2 || head.y - head.radius < firstPresentY - 2 {
            warnings.append(AnalysisWarning(code: "head_not_in_field", message: "the femoral head is not wholly in the field: centre the hip"))
        }
        let missing = map.rowPresent.filter { !$0 }.count
        if missing > 0 {
            warnings.append(AnalysisWarning(code: "scan_incomplete", message: "\(missing) lines of the scan are missing",
                                            value: Double(missing), unit: "lines"))
        }
        if let w = AnalysisWarning.moved(scan) { warnings.append(w) }
        // The soft tissue over the femur measured (the total hip's, or the neck's without one).
        let measured = pixels["total_hip"] ?? pixels["neck"] ?? []
        let soft = measured.compactMap { i -> Double? in
            guard i >= 0, i < map.softTissue.count else { return nil }
            let s = Double(map.softTissue[i])
            return s.isFinite ? s : nil
        }
        if !soft.isEmpty, let w = AnalysisWarning.beyondCalibration(scan, softTissueGCm2: soft.reduce(0, +) / Double(soft.count),
                                                                     over: pixels["total_hip"] != nil ? "the total hip" : "the femoral neck") {
            warnings.append(w)
        }
        let nsa = acos(max(-1, min(1, -(e.x * down.x + e.y * down.y)))) * 180 / .pi
        return HipMeasurement(
            side: side, headCentre: TablePoint(head.x, head.y), headRadiusMM: head.radius, neckWaist: waist,
            neckDirection: TablePoint(e.x, e.y), neckWidthMM: neck.widthMM,
            shaftTop: TablePoint(shaft.x(atY: shaft.topY), shaft.topY), shaftBottom: TablePoint(shaft.x(atY: shaft.bottomY), shaft.bottomY),
            neckShaftAngleDeg: nsa, shaftAngleDeg: shaftAngle, lesserTrochanterBottomYMM: lesser?.bottomY, lesserTrochanterMM: lesser?.prominenceMM,
            neckBox: [point(s0, -half), point(s1, -half), point(s1, half), point(s0, half)],
            medialCut: [point(s0, -neck.widthMM / 2 - 8), point(s0, neck.widthMM / 2 + 8)],
            bottomCut: bottomCut, trochanterLine: trochanterLine, wardsBox: wardsBox, rois: rois, warnings: warnings,
            noiseGCm2: noise, thresholdGCm2: threshold, pixels: pixels)
    }
}

/// The working state of one hip's measurement: the image, its bone mask, which way is lateral.
private struct Hip {
    let map: BoneMap
    let mask: Mask
    /// +1 when lateral is towards larger x (a left hip), −1 otherwise.
    let lat: Double

    init(map: BoneMap, mask: Mask, lat: Double) { self.map = map; self.mask = mask; self.lat = lat }

    func rowMissing(_ y: Double) -> Bool {
        let r = map.row(atY: y)
        return r >= 0 && r < map.rows && !map.rowPresent[r]
    }

    func isBone(_ x: Double, _ y: Double) -> Bool {
        let c = map.column(atX: x), r = map.row(atY: y)
        return mask[r, c]
    }

    struct Shaft {
        var intercept: Double
        var slope: Double
        var radius: Double
        var topY: Double
        var bottomY: Double
        func x(atY y: Double) -> Double { intercept + slope * y }
        /// Unit vector down the shaft (towards the knee).
        var direction: (x: Double, y: Double) { let l = hypot(slope, 1); return (slope / l, 1 / l) }
    }

    /// The runs of bone in a row: (first column, last column).
    func runs(row r: Int) -> [(Int, Int)] {
        var out: [(Int, Int)] = []
        var c = 0
        while c < map.columns {
            guard mask[r, c] else { c += 1; continue }
            let start = c
            while c < map.columns && mask[r, c] { c += 1 }
            out.append((start, c - 1))
        }
        return out
    }

    /// A run of bone in one row of the shaft's fit: its place, width, mineral and how much its
    /// outer thirds carry against its middle third (`tubeIndex`).
    struct ShaftRun {
        var row: Int
        var centre: Double
        var width: Double
        var mineral: Double
        var tubeIndex: Double
    }

    /// How a run's mineral lies across it: the mean over its outer thirds over the mean over its
    /// middle third, one edge pixel left out each side (partial volume). A tube (a cortex round a
    /// marrow canal, seen through its chords) carries most at its edges: over 1.15 for any cortex
    /// up to 60 % of the radius, still 1.04 with its canal full of trabecular bone at 15 % of the
    /// cortex's density; a solid rod carries most in the middle: 0.78 (docs/analysis.md).
    func tubeIndex(row r: Int, _ a: Int, _ b: Int) -> Double {
        let lo = a + 1, hi = b - 1
        guard hi - lo + 1 >= 6 else { return .nan }
        let third = Double(hi - lo + 1) / 3
        var outer = 0.0, nOuter = 0.0, middle = 0.0, nMiddle = 0.0
        for c in lo...hi {
            let v = Double(map[r, c])
            guard v.isFinite else { continue }
            let i = Double(c - lo) + 0.5
            if i > third && i < 2 * third { middle += v; nMiddle += 1 } else { outer += v; nOuter += 1 }
        }
        guard nOuter > 0, nMiddle > 0, middle > 0 else { return .nan }
        return (outer / nOuter) / (middle / nMiddle)
    }

    /// The shaft: in the field's lowest `shaftFitMM`, the runs of bone 12–60 mm wide are followed
    /// from row to row into tracks; a track present in most rows is a candidate. The femoral
    /// shaft is a tube (cortex round the canal), the ischium and the pubic ramus are not: of the
    /// tubular candidates the one with the most mineral, and only when none is tubular the one
    /// with the most mineral (an osteoporotic shaft can carry less mineral than a dense ischium,
    /// and the ischium taken for the shaft puts the head on the wrong side).
    func findShaft(_ p: HipAnalysis.Parameters) throws(HipAnalysisError) -> Shaft {
        let present = (0..<map.rows).filter { map.rowPresent[$0] }
        guard let last = present.last else { throw .noFemur("no line of the scan arrived") }
        let fitRows = present.filter { map.y($0) > map.y(last) - p.shaftFitMM }
        var tracks: [[ShaftRun]] = []
        for r in fitRows {
            for (a, b) in runs(row: r) {
                let width = Double(b - a + 1) * map.dx
                guard width >= 12 && width <= 60 else { continue }
                var mineral = 0.0
                for c in a...b where map[r, c].isFinite { mineral += Double(map[r, c]) }
                let run = ShaftRun(row: r, centre: (map.x(a) + map.x(b)) / 2, width: width, mineral: mineral, tubeIndex: tubeIndex(row: r, a, b))
                // The track this run continues: its last run in an earlier row, centred within 6 mm.
                var nearest: (track: Int, distance: Double)?
                for (t, track) in tracks.enumerated() {
                    guard let end = track.last, end.row < r else { continue }
                    let distance = abs(end.centre - run.centre)
                    if distance < 6 && distance < nearest?.distance ?? .infinity { nearest = (t, distance) }
                }
                if let nearest { tracks[nearest.track].append(run) } else { tracks.append([run]) }
            }
        }
        let candidates = tracks.filter { $0.count >= max(5, fitRows.count * 6 / 10) }
        func mineral(_ t: [ShaftRun]) -> Double { t.reduce(0) { $0 + $1.mineral } / Double(t.count) }
        func tubular(_ t: [ShaftRun]) -> Bool { Profile.median(t.map(\.tubeIndex).filter(\.isFinite)) > 1 }
        let tubes = candidates.filter(tubular)
        guard let chosen = (tubes.isEmpty ? candidates : tubes).max(by: { mineral($0) < mineral($1) }) else {
            throw .noFemur("no femoral shaft in the field's lowest \(Int(p.shaftFitMM)) mm")
        }
        let ys = chosen.map { map.y($0.row) }, xs = chosen.map(\.centre), widths = chosen.map(\.width)
        // Least squares x = a + b·y, then again without the rows far from it.
        func fit(_ idx: [Int]) -> (Double, Double) {
            let n = Double(idx.count)
            let my = idx.reduce(0) { $0 + ys[$1] } / n, mx = idx.reduce(0) { $0 + xs[$1] } / n
            var sxy = 0.0, syy = 0.0
            for i in idx { sxy += (ys[i] - my) * (xs[i] - mx); syy += (ys[i] - my) * (ys[i] - my) }
            let b = syy > 0 ? sxy / syy : 0
            return (mx - b * my, b)
        }
        var (a, b) = fit(Array(ys.indices))
        let kept = ys.indices.filter { abs(xs[$0] - (a + b * ys[$0])) < 3 }
        if kept.count >= 5 { (a, b) = fit(kept) }
        let width = Profile.median(widths)
        guard width.isFinite else { throw .noFemur("no femoral shaft") }
        return Shaft(intercept: a, slope: b, radius: width / 2, topY: ys.first ?? 0, bottomY: ys.last ?? 0)
    }

    /// The head: circle Hough on the bone image's edges above the shaft.
    func findHead(shaft: Shaft, _ p: HipAnalysis.Parameters) throws(HipAnalysisError) -> (x: Double, y: Double, radius: Double) {
        let w = map.columns, hgt = map.rows
        // A 3 × 3 mean of the bone image (no number: 0).
        var s = [Double](repeating: 0, count: w * hgt)
        for r in 0..<hgt {
            for c in 0..<w {
                var sum = 0.0, n = 0.0
                for rr in max(0, r - 1)...min(hgt - 1, r + 1) {
                    for cc in max(0, c - 1)...min(w - 1, c + 1) {
                        let v = map[rr, cc]
                        if v.isFinite { sum += Double(v) }
                        n += 1
                    }
                }
                s[r * w + c] = sum / n
            }
        }
        let radii = Array(16...40)
        var total = [Int32](repeating: 0, count: w * hgt)
        // Edges next to a line that never arrived are the gap's, not the bone's: no vote.
        for r in 1..<(hgt - 1) where map.y(r) < shaft.topY && map.rowPresent[r] && map.rowPresent[r - 1] && map.rowPresent[r + 1] {
            for c in 1..<(w - 1) {
                func at(_ rr: Int, _ cc: Int) -> Double { s[rr * w + cc] }
                let gx = (at(r - 1, c + 1) + 2 * at(r, c + 1) + at(r + 1, c + 1) - at(r - 1, c - 1) - 2 * at(r, c - 1) - at(r + 1, c - 1)) / (8 * map.dx)
                let gy = (at(r + 1, c - 1) + 2 * at(r + 1, c) + at(r + 1, c + 1) - at(r - 1, c - 1) - 2 * at(r - 1, c) - at(r - 1, c + 1)) / (8 * map.dy)
                let g = hypot(gx, gy)
                guard g > 0.06 else { continue }
                let ux = gx / g, uy = gy / g
                for radius in radii {
                    let x = map.x(c) + Double(radius) * ux, y = map.y(r) + Double(radius) * uy
                    let cc = map.column(atX: x), rr = map.row(atY: y)
                    guard cc >= 0, cc < w, rr >= 0, rr < hgt else { continue }
                    total[rr * w + cc] += 1
                }
            }
        }
        // The centre: the most votes (3 × 3 summed) above the shaft's top, medial of the shaft,
        // and the most lateral of it (a scan of the other hip). Each is a head only if its bone
        // ends along rays into a head's free arc (below and towards the body's midline): a
        // trochanter's arc votes too, but bone runs on beyond it.
        var medial: (votes: Int32, r: Int, c: Int)?, lateral: (votes: Int32, r: Int, c: Int)?
        for r in 1..<(hgt - 1) where map.y(r) < shaft.topY - 10 {
            for c in 1..<(w - 1) {
                let offset = lat * (map.x(c) - shaft.x(atY: map.y(r)))
                guard abs(offset) > 15 else { continue }
                var v: Int32 = 0
                for rr in (r - 1)...(r + 1) { for cc in (c - 1)...(c + 1) { v += total[rr * w + cc] } }
                if offset < 0 {
                    if medial == nil || v > medial?.votes ?? 0 { medial = (v, r, c) }
                } else if lateral == nil || v > lateral?.votes ?? 0 { lateral = (v, r, c) }
            }
        }
        if let m = medial, m.votes >= 40, let radius = headRadius(x: map.x(m.c), y: map.y(m.r), towardsMidline: -lat, p) {
            return (map.x(m.c), map.y(m.r), radius)
        }
        // The other hip only when its head is clear: a head-like arc lateral of the shaft with
        // more than twice the votes of anything medial (a wrong side named is worse than "not found").
        if let l = lateral, l.votes >= 40, l.votes > 2 * (medial?.votes ?? 0),
           headRadius(x: map.x(l.c), y: map.y(l.r), towardsMidline: lat, p) != nil {
            throw .otherSide(expected: lat > 0 ? "left" : "right")
        }
        throw .headNotFound
    }

    /// The radius of a head centred at (x, y): where its bone ends along rays into its free arc,
    /// below and towards the body's midline (`towardsMidline` the sign of x that way; the
    /// acetabulum covers the upper half, the neck leaves the other way): the median of those
    /// reaches, starting inside the smallest head; nil when they do not make a head.
    func headRadius(x cx: Double, y cy: Double, towardsMidline sign: Double, _ p: HipAnalysis.Parameters) -> Double? {
        var reaches: [Double] = []
        for deg in stride(from: 75.0, through: 165.0, by: 5.0) {
            let t = deg * .pi / 180, d = (x: -sign * cos(t), y: sin(t))
            var r = p.headRadiusMM.lowerBound * 0.6
            // A line that never arrived does not end the head.
            while r <= p.headRadiusMM.upperBound + 4 && (isBone(cx + r * d.x, cy + r * d.y) || rowMissing(cy + r * d.y)) { r += 0.5 }
            if r <= p.headRadiusMM.upperBound + 4 { reaches.append(r - 0.25) }
        }
        let radius = Profile.median(reaches)
        guard reaches.count >= 5, p.headRadiusMM.contains(radius) else { return nil }
        return radius

    }

    struct Neck {
        var origin: (x: Double, y: Double)
        var direction: (x: Double, y: Double)
        var waistS: Double
        var widthMM: Double
    }

    /// The bone run through (x, y) along ±n: how far it reaches on each side (nil: not bone there,
    /// or no end within `reach`).
    func run(_ x: Double, _ y: Double, _ n: (x: Double, y: Double), reach: Double = 45) -> (minus: Double, plus: Double)? {
        // A line that never arrived neither starts nor ends a run (its pixels are unknown).
        guard isBone(x, y) || rowMissing(y) else { return nil }
        let step = 0.5 * min(map.dx, map.dy)
        func extent(_ sign: Double) -> Double? {
            var t = step
            while t <= reach {
                let px = x + sign * t * n.x, py = y + sign * t * n.y
                if !isBone(px, py) && !rowMissing(py) { return t - step / 2 }
                t += step
            }
            return nil
        }
        guard let a = extent(-1), let b = extent(1) else { return nil }
        return (a, b)
    }

    func findNeck(head: (x: Double, y: Double, radius: Double), shaft: Shaft, _ p: HipAnalysis.Parameters) throws(HipAnalysisError) -> Neck {
        let rh = head.radius
        // A first direction: the one along which the neck's cross-sections just outside the
        // head are centred.
        let span = stride(from: rh, through: rh + 18, by: 1.0).map { $0 }
        var best: (score: Double, phi: Double)?
        for deg in stride(from: 5.0, through: 80.0, by: 1.0) {
            let phi = deg * .pi / 180
            let e = (x: lat * cos(phi), y: sin(phi)), n = (x: -e.y, y: e.x)
            var sum = 0.0
            for s in span {
                if let r = run(head.x + s * e.x, head.y + s * e.y, n) {
                    let off = (r.plus - r.minus) / 2
                    sum += off * off
                } else { sum += 100 }
            }
            let score = sum / Double(span.count)
            if best == nil || score < best?.score ?? .infinity { best = (score, phi) }
        }
        guard let chosen = best, chosen.score < 50 else { throw .implausibleNeck("no direction from the head along which the neck is centred") }
        // Then the axis through the head's centre and the middle of the neck's narrowest
        // cross-section, until it settles (the neck's axis passes through the head's centre).
        var e = (x: lat * cos(chosen.phi), y: sin(chosen.phi))
        var waist: (s: Double, width: Double) = (0, .nan)
        for _ in 0..<4 {
            let n = (x: -e.y, y: e.x)
            var widths: [(s: Double, w: Double, off: Double)] = []
            for s in stride(from: 0.9 * rh, through: rh + 25, by: 0.5) {
                guard let r = run(head.x + s * e.x, head.y + s * e.y, n) else { widths.append((s, .nan, 0)); continue }
                widths.append((s, r.minus + r.plus, (r.plus - r.minus) / 2))
            }
            let smooth = Profile.smooth(widths.map(\.w), half: 4)
            guard let k = smooth.indices.filter({ smooth[$0].isFinite }).min(by: { smooth[$0] < smooth[$1] }) else {
                throw .implausibleNeck("no cross-section of the neck")
            }
            waist = (widths[k].s, smooth[k])
            let m = (x: head.x + widths[k].s * e.x + widths[k].off * n.x, y: head.y + widths[k].s * e.y + widths[k].off * n.y)
            let l = hypot(m.x - head.x, m.y - head.y)
            guard l > 0 else { break }
            e = ((m.x - head.x) / l, (m.y - head.y) / l)
        }
        guard waist.width >= 15 && waist.width <= 60 else { throw .implausibleNeck(String(format: "a neck %.0f mm wide", waist.width)) }
        let down = shaft.direction
        let nsa = acos(max(-1, min(1, -(e.x * down.x + e.y * down.y)))) * 180 / .pi
        guard nsa >= 100 && nsa <= 165 else { throw .implausibleNeck(String(format: "a neck–shaft angle of %.0f°", nsa)) }
        return Neck(origin: (head.x, head.y), direction: e, waistS: waist.s, widthMM: waist.width)
    }

    /// The femur's medial edge along the shaft, going up from the fit: where it first leaves the
    /// shaft's edge (the lesser trochanter's bottom), and how far it then stands out.
    func lesserTrochanter(shaft: Shaft, neckWaistY: Double, _ p: HipAnalysis.Parameters) -> (bottomY: Double, prominenceMM: Double)? {
        let cosT = 1 / hypot(shaft.slope, 1)
        func medial(_ r: Int) -> Double? {
            guard map.rowPresent[r] else { return nil }
            let y = map.y(r), x = shaft.x(atY: y)
            guard let run = run(x, y, (x: lat, y: 0), reach: 80) else { return nil }
            return run.minus * cosT
        }
        let rows = (0..<map.rows).filter { map.y($0) >= neckWaistY && map.y($0) <= shaft.bottomY }
        let fitRows = rows.filter { map.y($0) >= shaft.topY }
        let base = Profile.median(fitRows.compactMap(medial))
        guard base.isFinite else { return nil }
        var streak = 0
        for r in rows.reversed() where map.y(r) < shaft.topY {
            guard let m = medial(r) else { streak = 0; continue }
            streak = m > base + p.edgeDepartureMM ? streak + 1 : 0
            if streak == 3 {
                // The trochanter's lower end: below the rows that left the shaft by the
                // departure, down while its edge still stands out by half of it (a trochanter
                // that barely stands out, the leg turned inwards as it should be, tapers over
                // several millimetres below the departure, into the shaft's rows if it reaches
                // them: their edge is a median, which a trochanter over a few of them does not move).
                // At most `lesserTrochanterTaperMM` (the shaft itself widens towards the top of
                // its fit, and must not carry the end down with it).
                let departure = r + 2
                var bottom = departure
                while bottom + 1 < map.rows, map.y(bottom + 1) <= shaft.bottomY, map.y(bottom + 1) - map.y(departure) <= p.lesserTrochanterTaperMM,
                      let m = medial(bottom + 1), m > base + p.edgeDepartureMM / 2 {
                    bottom += 1
                }
                let top = map.row(atY: map.y(bottom) - 15)
                let prominence = (max(0, top)...bottom).compactMap(medial).max() ?? base
                return (map.y(bottom), prominence - base)
            }
        }
        return nil
    }

    /// The greater trochanter's base: going up from `fromY`, where the femur's lateral edge
    /// first leaves the shaft's.
    func greaterTrochanterBase(shaft: Shaft, fromY: Double, toY: Double, _ p: HipAnalysis.Parameters) -> TablePoint? {
        let cosT = 1 / hypot(shaft.slope, 1)
        var streak = 0
        let r0 = max(0, map.row(atY: toY)), r1 = min(map.rows - 1, map.row(atY: fromY))
        guard r0 < r1 else { return nil }
        var base: [Double] = []
        for r in stride(from: r1, through: r0, by: -1) where map.rowPresent[r] {
            let y = map.y(r), x = shaft.x(atY: y)
            guard let run = run(x, y, (x: lat, y: 0), reach: 90) else { streak = 0; continue }
            let l = run.plus * cosT
            if base.count < 5 { base.append(l); continue }
            let b = Profile.median(base)
            streak = l > b + 3 ? streak + 1 : 0
            if streak == 3 {
                let rr = r + 2
                let yy = map.y(rr), xx = shaft.x(atY: yy)
                let reach = self.run(xx, yy, (x: lat, y: 0), reach: 90)?.plus ?? b
                return TablePoint(xx + lat * reach, yy)
            }
        }
        return nil
    }

    /// Bone pixels connected (8-neighbours) to the one nearest `seed`, among those whose centre
    /// satisfies `inside`.
    func fill(from seed: TablePoint, inside: (Double, Double) -> Bool) -> [Int] {
        let c0 = map.column(atX: seed.xMM), r0 = map.row(atY: seed.yMM)
        // The seed may fall on a pixel just outside the bone: the nearest bone within 2 pixels.
        var start: Int?
        search: for d in 0...2 {
            for dr in -d...d {
                for dc in -d...d where mask[r0 + dr, c0 + dc] && inside(map.x(c0 + dc), map.y(r0 + dr)) {
                    start = (r0 + dr) * map.columns + c0 + dc
                    break search
                }
            }
        }
        guard let start else { return [] }
        var seen = Set([start]), stack = [start], out: [Int] = []
        while let i = stack.popLast() {
            out.append(i)
            let r = i / map.columns, c = i % map.columns
            for dr in -1...1 {
                for dc in -1...1 where dr != 0 || dc != 0 {
                    let rr = r + dr, cc = c + dc
                    guard mask[rr, cc] else { continue }
                    let j = rr * map.columns + cc
                    guard !seen.contains(j), inside(map.x(cc), map.y(rr)) else { continue }
                    seen.insert(j)
                    stack.append(j)
                }
            }
        }
        return out.sorted()
    }

    /// Pixels whose centre lies in a box of the neck's frame.
    func pixels(near centre: TablePoint, within reach: Double, along s: ClosedRange<Double>, across d: ClosedRange<Double>,
                along: (Double, Double) -> Double, across acrossOf: (Double, Double) -> Double) -> [Int] {
        var out: [Int] = []
        let r0 = max(0, map.row(atY: centre.yMM - reach)), r1 = min(map.rows - 1, map.row(atY: centre.yMM + reach))
        let c0 = max(0, map.column(atX: centre.xMM - reach)), c1 = min(map.columns - 1, map.column(atX: centre.xMM + reach))
        guard r0 <= r1, c0 <= c1 else { return [] }
        for r in r0...r1 {
            for c in c0...c1 {
                let x = map.x(c), y = map.y(r)
                if s.contains(along(x, y)) && d.contains(acrossOf(x, y)) { out.append(r * map.columns + c) }
            }
        }
        return out
    }

    /// An ROI's numbers; `missingOver`: the table rows (y, mm) its region spans, over which a
    /// line that never arrived makes it incomplete (its pixels alone cannot say: a fill stops
    /// at a missing line).
    func roi(_ name: String, _ pixels: [Int], missingOver span: (top: Double, bottom: Double)) -> HipROIMeasure {
        var bmc = 0.0
        for i in pixels {
            let v = map.bone[i]
            if v.isFinite { bmc += Double(v) }
        }
        let area = Double(pixels.count) * map.pixelAreaCm2
        let lo = max(0, map.row(atY: min(span.top, span.bottom))), hi = min(map.rows - 1, map.row(atY: max(span.top, span.bottom)))
        let missing = lo <= hi ? (lo...hi).filter { !map.rowPresent[$0] }.count : 0
        bmc *= map.pixelAreaCm2
        return HipROIMeasure(name: name, bmdGCm2: area > 0 ? bmc / area : nil, bmcG: bmc, areaCm2: area, missingLines: missing)
    }
}
