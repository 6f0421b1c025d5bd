import DXDecomposition
import Foundation

/// The AP lumbar spine analysis: find the spine, its disc spaces and its vertebrae, name them
/// from the iliac crests and the lowest ribs, and measure each vertebra between its disc lines.
/// Every size is in millimetres (`Parameters`, docs/analysis.md gives each one's source); the
/// steps are functions a test can call on a scene with known truth.
///
/// 1. Bone: the half-maximum rule (`BoneMap.boneMask`): a pixel is bone where the mean of its
///    3 × 3 neighbourhood clears the noise and the pixel itself reaches half that mean, so
///    edges fall halfway between bone and soft tissue and posterior elements of 0.2 g/cm²
///    count under thick soft tissue, where single pixels are too noisy to threshold.
/// 2. The axis: the bone-weighted centre of the spine in each row near the field's strongest
///    column of bone, then a weighted running median (robust to disc rows and ribs).
/// 3. Disc spaces: minima of the bone in a core ±`coreHalfWidthMM` about the axis, each
///    placed at the middle of its dip (the half-depth crossings), tilted by the same on
///    each half of the body.
/// 4. Levels: the bodies between consecutive disc lines; each one's sides from its middle
///    rows; the ROI is the level's bone within its sides plus `roiMarginMM`.
/// 5. Names: the iliac crests' highest point marks the L4–L5 disc (the intercristal line);
///    the lowest vertebra with ribs is T12. The crests decide; a disagreement is a warning
///    (a transitional vertebra, or a miscount to check).
/// 6. Findings: metal, a compression fracture, an osteophyte (structural, each excludes its
///    vertebra), and positioning (tilted, not straight, off-centre, landmarks out of field).
public enum SpineAnalysis {
    public struct Parameters: Sendable, Equatable {
        /// The neighbourhood mean's threshold: at least this (g/cm²), and `noiseSigmas` SDs of
        /// the mean's noise (a pixel's noise / 3).
        public var minimumThresholdGCm2 = 0.08
        public var noiseSigmas = 5.0
        /// The spine is looked for within this distance of the strongest column of bone.
        public var axisSearchHalfWidthMM = 35.0
        /// Half-width of the core profile for disc spaces (inside every lumbar body).
        public var coreHalfWidthMM = 15.0
        /// Disc spaces closer than this are one.
        public var minimumLevelMM = 14.0
        /// A level's plateau is looked for this far on either side of a dip.
        public var plateauReachMM = 25.0
        /// A dip is a disc space when its floor is below this fraction of both plateaus.
        public var discDepth = 0.55
        /// The ROI extends this far beyond the body's sides.
        public var roiMarginMM = 5.0
        /// A level taller than this many times the median is two vertebrae (a disc not found).
        public var mergedLevelRatio = 1.6
        /// Lines missing over this length between the first and last disc: refused.
        public var missingInSpineMM = 4.0
        /// Iliac crests within this distance of a disc mark it as L4–L5.
        public var crestToDiscMM = 15.0
        /// Positioning: the axis over L1–L4 tilted beyond this (degrees), bent beyond this
        /// (mm from its straight line), or its centre beyond this from the field's centre.
        public var tiltLimitDeg = 5.0
        public var bendLimitMM = 8.0
        public var offCentreLimitMM = 20.0
        /// A body shorter than this fraction of its neighbours' mean is a suspected fracture
        /// (Genant grade 1 begins at 20 % loss of height).
        public var fractureHeightRatio = 0.8
        /// Dense bone (≥ `osteophyteDensityGCm2`) beyond the body's side by more than
        /// `osteophyteBeyondMM`, covering at least `osteophyteAreaMM2`, is an osteophyte.
        public var osteophyteDensityGCm2 = 0.6
        public var osteophyteBeyondMM = 3.0
        public var osteophyteAreaMM2 = 12.0
        /// A vertebra whose ROI is saturated over more than this share has no soft-tissue
        /// reference beside it: not measured (ROIResult's unmeasured tolerance is 1 %).
        public var saturatedShare = 0.01
        /// Metal: pixels of at least this bone-mineral equivalent or opaque, covering this.
        public var metalGCm2 = 3.0
        public var metalAreaMM2 = 3.0

        public init() {}
    }

    /// Measures an AP spine scan. Refuses a scan of another region, one with no spine, one
    /// with fewer than two levels, and one whose vertebrae cannot be named.
    /// `correction`: a technologist's disc lines and L4, applied over what is found.
    public static func measure(_ scan: DecomposedScan, _ p: Parameters = Parameters(),
                               correction: ROICorrection? = nil) throws(SpineAnalysisError) -> SpineMeasurement {
        if let why = correction?.problem(site: "ap_spine") { throw .correction(why) }
        if let region = scan.provenance.region, region != "ap_spine" {
            throw .notAnAPSpine(region.replacingOccurrences(of: "_", with: " "))
        }
        if let problem = scan.geometryProblem(pixelMM: 0.001...100) { throw .impossibleGeometry(problem) }
        let map = BoneMap(scan)
        let noise = BoneMap.softTissueNoise(scan)
        let (bone, threshold) = map.boneMask(noise: noise, minimumGCm2: p.minimumThresholdGCm2, sigmas: p.noiseSigmas)
        let axis = try findAxis(map, bone: bone, p)
        let core = coreProfile(map, bone: bone, axis: axis, halfWidthMM: p.coreHalfWidthMM, from: 0, to: p.coreHalfWidthMM)
        var discs = findDiscs(map, bone: bone, axis: axis, core: core, p)
        if let ys = correction?.discLinesMM {
            let top = map.y(0), bottom = map.y(map.rows - 1)
            if let outside = ys.first(where: { $0 < min(top, bottom) || $0 > max(top, bottom) }) {
                throw .correction("the disc line at y \(format(outside)) mm is outside the scan (\(format(min(top, bottom))) to \(format(max(top, bottom))) mm)")
            }
            discs = ys.map { y in
                let found = discs.min { abs($0.yMM - y) < abs($1.yMM - y) }
                if let found, abs(found.yMM - y) <= ROICorrection.nearestDiscMM {
                    return DiscLine(xMM: found.xMM, yMM: y, slope: found.slope)
                }
                return DiscLine(xMM: axis[max(0, min(map.rows - 1, map.row(atY: y)))], yMM: y, slope: 0)
            }
        }
        guard discs.count >= 3 else { throw .tooFewLevels(max(0, discs.count - 1)) }

        // A level far taller than the others is two vertebrae with a disc not found; lines
        // missing between the discs may hide one. Either would shift every name: refused.
        let spacings = zip(discs, discs.dropFirst()).map { $1.yMM - $0.yMM }
        let typical = Profile.median(spacings)
        if let i = spacings.indices.first(where: { spacings[$0] > p.mergedLevelRatio * typical }) {
            throw .discNotFound((discs[i].yMM + discs[i + 1].yMM) / 2)
        }
        if let first = discs.first, let last = discs.last {
            let r0 = max(0, map.row(atY: first.yMM)), r1 = min(map.rows - 1, map.row(atY: last.yMM))
            var run = 0, longest = 0
            if r0 <= r1 { for r in r0...r1 { run = map.rowPresent[r] ? 0 : run + 1; longest = max(longest, run) } }
            if Double(longest) * map.dy >= p.missingInSpineMM { throw .linesMissingInSpine(Double(longest) * map.dy) }
        }
        var levels = (0..<(discs.count - 1)).map { i in
            measureLevel(map, bone: bone, axis: axis, core: core, upper: discs[i], lower: discs[i + 1], p)
        }
        var warnings: [AnalysisWarning] = []

        // Landmarks.
        let sides = (left: Profile.median(levels.map(\.leftExtent)), right: Profile.median(levels.map(\.rightExtent)))
        let landmarks = findLandmarks(map, bone: bone, axis: axis, sides: sides, discs: discs, p)
        var crestDisc: Int?
        if let crest = landmarks.crestY {
            let nearest = discs.indices.min { abs(discs[$0].yMM - crest) < abs(discs[$1].yMM - crest) }
            if let k = nearest, abs(discs[k].yMM - crest) <= p.crestToDiscMM, k >= 1 { crestDisc = k }
        }
        // The level (index into `levels`; −1 the partial one above the first disc) the lowest ribs attach to.
        var ribLevel: Int?
        if let attach = landmarks.lowestRibY {
            ribLevel = discs.lastIndex { $0.yMM <= attach } ?? -1
        }
        // Index of L4 among the levels.
        let l4: Int
        let cue: Labelling.Cue
        var agree: Bool?
        var named: Int?
        if let y = correction?.l4YMM {
            guard let k = levels.indices.first(where: { discs[$0].yMM <= y && y < discs[$0 + 1].yMM }) else {
                throw .correction("no vertebra between disc lines at y \(format(y)) mm to call L4")
            }
            named = k
        }
        if let k = named {
            // The technologist's names; what the landmarks would have said is kept beside them.
            l4 = k
            cue = .technologist
            let automatic = crestDisc.map { $0 - 1 } ?? ribLevel.map { $0 + 4 }
            if let a = automatic, a != k {
                warnings.append(AnalysisWarning(
                    code: "labels_corrected",
                    message: "the vertebrae are named by the technologist: the \(crestDisc != nil ? "iliac crests" : "lowest ribs") would name the level called L4 here \(levelName(k, l4: a))",
                    value: Double(k - a), unit: "levels"))
            }
        } else if let k = crestDisc {
            l4 = k - 1
            cue = .iliacCrests
            if let t = ribLevel {
                agree = t == l4 - 4
                if agree == false {
                    let ribName = levelName(t, l4: l4)
                    warnings.append(AnalysisWarning(
                        code: "labels_disagree",
                        message: "the iliac crests put L4–L5 at the disc at y \(format(discs[k].yMM)) mm, but the lowest ribs are on the vertebra that makes \(ribName): a transitional vertebra, or ribs or crests misread; check the labels (named from the crests)",
                        value: Double(t - (l4 - 4)), unit: "levels"))
                }
            }
        } else if let t = ribLevel {
            l4 = t + 4
            cue = .ribs
            warnings.append(AnalysisWarning(code: "iliac_crests_not_in_field",
                                            message: "the iliac crests are not in the field (or not near a disc space): the vertebrae are named from the lowest ribs (T12) alone"))
        } else {
            throw .cannotLabel
        }
        if ribLevel == nil && crestDisc != nil && cue != .technologist {
            warnings.append(AnalysisWarning(code: "t12_not_in_field",
                                            message: "no ribs seen on T12: the names rest on the iliac crests alone"))
        }
        for i in levels.indices { levels[i].name = levelName(i, l4: l4) }
        let labelling = Labelling(decidedBy: cue, crestYMM: landmarks.crestY, lowestRibsOn: ribLevel.map { levelName($0, l4: l4) }, cuesAgree: agree)

        // Structural findings: fracture by height against the neighbours and against the
        // spine's median level (so that two fractures side by side are both found).
        let medianHeight = Profile.median(levels.map(\.height))
        for i in levels.indices {
            let neighbours = [i - 1, i + 1].filter { levels.indices.contains($0) && levels[$0].abnormality == nil }.map { levels[$0].height }
            guard !neighbours.isEmpty, levels[i].abnormality == nil else { continue }
            let expected = max(neighbours.reduce(0, +) / Double(neighbours.count), medianHeight.isFinite ? medianHeight : 0)
            if levels[i].height < p.fractureHeightRatio * expected {
                levels[i].abnormality = "suspected compression fracture: body \(format(levels[i].height)) mm high against \(format(expected)) mm expected from its neighbours and the spine (\(Int(((1 - levels[i].height / expected) * 100).rounded())) % less)"
            }
        }

        // Positioning, over L1–L4 where they are.
        let lumbar = levels.filter { ["L1", "L2", "L3", "L4"].contains($0.name) }
        for name in ["L1", "L2", "L3", "L4"] where !lumbar.contains(where: { $0.name == name }) {
            warnings.append(AnalysisWarning(code: "vertebra_not_in_field", message: "\(name) is not wholly in the field (no disc space found on both sides of it)"))
        }
        if let top = lumbar.first, let bottom = lumbar.last {
            let r0 = max(0, map.row(atY: top.upper.yMM)), r1 = min(map.rows - 1, map.row(atY: bottom.lower.yMM))
            if r1 > r0 + 10 {
                let ys = (r0...r1).map { map.y($0) }, xs = (r0...r1).map { axis[$0] }
                let (slope, intercept) = fitLine(ys, xs)
                let tilt = atan(slope) * 180 / .pi
                if abs(tilt) > p.tiltLimitDeg {
                    warnings.append(AnalysisWarning(code: "spine_tilted", message: "the spine is tilted \(format(abs(tilt)))° from the scan's direction (straighten the patient)",
                                                    value: tilt, unit: "deg"))
                }
                let bend = zip(ys, xs).map { abs($1 - (intercept + slope * $0)) }.max() ?? 0
                if bend > p.bendLimitMM {
                    warnings.append(AnalysisWarning(code: "spine_not_straight", message: "the spine bends \(format(bend)) mm from a straight line over L1–L4 (scoliosis or positioning): check the disc lines",
                                                    value: bend, unit: "mm"))
                }
                let centre = xs.reduce(0, +) / Double(xs.count)
                let fieldCentre = map.x(0) + Double(map.columns - 1) * map.dx / 2
                if abs(centre - fieldCentre) > p.offCentreLimitMM {
                    warnings.append(AnalysisWarning(code: "spine_off_centre", message: "the spine lies \(format(abs(centre - fieldCentre))) mm from the field's centre (centre the patient)",
                                                    value: centre - fieldCentre, unit: "mm"))
                }
            }
        }
        let missingRows = map.rowPresent.filter { !$0 }.count
        if missingRows > 0 {
            warnings.append(AnalysisWarning(code: "scan_incomplete", message: "\(missingRows) of the scan's \(map.rows) lines never arrived (a stopped scan or lost data): vertebrae in them are not measured",
                                            value: Double(missingRows), unit: "lines"))
        }
        let movedThrough = lumbar.filter { l in
            scan.motion.contains { m in
                let y = scan.geometry.y(row: m.line)
                let a = l.upper.y(atX: l.centreX), b = l.lower.y(atX: l.centreX)
                return y >= min(a, b) && y <= max(a, b)
            }
        }
        if let w = AnalysisWarning.moved(scan, across: movedThrough.map(\.name)) { warnings.append(w) }
        let softPixels = lumbar.reduce(0) { $0 + $1.softTissuePixels }
        if softPixels > 0, let top = lumbar.first, let bottom = lumbar.last,
           let w = AnalysisWarning.beyondCalibration(scan, softTissueGCm2: lumbar.reduce(0) { $0 + $1.softTissueSum } / Double(softPixels),
                                                     over: top.name == bottom.name ? top.name : "\(top.name)–\(bottom.name)") {
            warnings.append(w)
        }
        for l in lumbar where l.missingLines > 0 {
            warnings.append(AnalysisWarning(code: "lines_missing", message: "\(l.name): \(l.missingLines) of its lines never arrived; its ROI is incomplete",
                                            value: Double(l.missingLines), unit: "lines"))
        }

        let axisPoints = stride(from: 0, to: map.rows, by: map.rows(5)).map { [axis[$0], map.y($0)] }
        return SpineMeasurement(vertebrae: levels.map(\.measure), labelling: labelling, warnings: warnings, axis: axisPoints,
                                noiseGCm2: noise.isFinite ? noise : 0, thresholdGCm2: threshold)
    }

    /// The name of level `i` when level `l4` is L4: L1…L5 (L6 beyond), T12 and T11 above, S1 below L5 is not named.
    static func levelName(_ i: Int, l4: Int) -> String {
        let n = 4 + (i - l4)
        return n >= 1 ? "L\(n)" : "T\(12 + n)"
    }

    static func format(_ v: Double) -> String { String(format: "%.1f", v) }

    // MARK: - The axis

    /// The spine's x in every row.
    static func findAxis(_ map: BoneMap, bone: Mask, _ p: Parameters) throws(SpineAnalysisError) -> [Double] {
        guard map.rows > 0, map.columns > 0 else { throw .noSpine("the scan is empty") }
        // The strongest column of bone, in the middle 70 % of the field.
        var columnSum = [Double](repeating: 0, count: map.columns)
        for r in 0..<map.rows { for c in 0..<map.columns where bone[r, c] { columnSum[c] += Double(map[r, c]) } }
        let smoothed = Profile.smooth(columnSum, half: map.columns(5))
        let lo = Int(Double(map.columns) * 0.15), hi = max(lo, Int(Double(map.columns) * 0.85) - 1)
        guard let start = (lo...hi).max(by: { smoothed[$0] < smoothed[$1] }), smoothed[start] > 0 else {
            throw .noSpine("no bone in the middle of the field")
        }
        let window = map.columns(p.axisSearchHalfWidthMM)
        var centre = [Double](repeating: .nan, count: map.rows), weight = [Double](repeating: 0, count: map.rows)
        var rowsWithSpine = 0, presentRows = 0
        for r in 0..<map.rows where map.rowPresent[r] {
            presentRows += 1
            // The run of bone in the window with the most mineral.
            var best: (sum: Double, moment: Double, length: Int)?
            var c = max(0, start - window)
            let end = min(map.columns - 1, start + window)
            while c <= end {
                guard bone[r, c] else { c += 1; continue }
                var sum = 0.0, moment = 0.0, length = 0
                while c <= end && bone[r, c] {
                    let v = Double(map[r, c])
                    sum += v; moment += v * map.x(c); length += 1; c += 1
                }
                if sum > (best?.sum ?? -1) { best = (sum, moment, length) }
            }
            guard let b = best, b.sum > 0 else { continue }
            if Double(b.length) * map.dx >= 15 { rowsWithSpine += 1 }
            centre[r] = b.moment / b.sum
            weight[r] = b.sum
        }
        guard presentRows > 0, Double(rowsWithSpine) >= 0.4 * Double(presentRows) else {
            throw .noSpine("a column of bone at least 15 mm wide runs through \(rowsWithSpine) of \(presentRows) lines")
        }
        let median = Profile.weightedMedian(centre, weight: weight, half: map.rows(15))
        return Profile.smooth(Profile.filled(median), half: map.rows(8))
    }

    // MARK: - Disc spaces

    /// Bone mineral summed over the part of each row between `from` and `to` mm from the axis
    /// (negative: the patient's right), on both sides when `from` is 0 and `halfWidthMM` is used.
    static func coreProfile(_ map: BoneMap, bone: Mask, axis: [Double], halfWidthMM: Double, from: Double, to: Double,
                            side: Double? = nil) -> [Double] {
        (0..<map.rows).map { r in
            guard map.rowPresent[r] else { return .nan }
            var s = 0.0
            let c0 = max(0, map.column(atX: axis[r] - to)), c1 = min(map.columns - 1, map.column(atX: axis[r] + to))
            guard c0 <= c1 else { return 0 }
            for c in c0...c1 where bone[r, c] || map.opaque[r * map.columns + c] {
                let d = map.x(c) - axis[r]
                if let side {
                    guard d * side >= from, d * side <= to else { continue }
                } else {
                    guard abs(d) >= from, abs(d) <= to else { continue }
                }
                // Metal has no number: it counts as dense, so that screws do not look like a disc.
                s += map.opaque[r * map.columns + c] ? 3 : Double(map[r, c])
            }
            return s
        }
    }

    /// Disc lines, head to foot.
    static func findDiscs(_ map: BoneMap, bone: Mask, axis: [Double], core: [Double], _ p: Parameters) -> [DiscLine] {
        let profile = Profile.smooth(core, half: 1)
        let reach = map.rows(p.plateauReachMM), local = map.rows(6)
        var candidates: [(row: Int, depth: Double)] = []
        for r in 0..<map.rows where profile[r].isFinite {
            let lo = max(0, r - local), hi = min(map.rows - 1, r + local)
            guard (lo...hi).allSatisfy({ !profile[$0].isFinite || profile[$0] >= profile[r] }) else { continue }
            let above = (max(0, r - reach)..<r).compactMap { profile[$0].isFinite ? profile[$0] : nil }.max() ?? 0
            let below = ((r + 1)..<min(map.rows, r + reach + 1)).compactMap { profile[$0].isFinite ? profile[$0] : nil }.max() ?? 0
            let plateau = min(above, below)
            guard plateau > 0, profile[r] < p.discDepth * plateau else { continue }
            candidates.append((r, profile[r] / plateau))
        }
        // One per disc: of dips closer than the shortest level, the deepest.
        var chosen: [(row: Int, depth: Double)] = []
        for c in candidates {
            if let last = chosen.last, Double(c.row - last.row) * map.dy < p.minimumLevelMM {
                if c.depth < last.depth { chosen[chosen.count - 1] = c }
            } else {
                chosen.append(c)
            }
        }
        let leftProfile = Profile.smooth(coreProfile(map, bone: bone, axis: axis, halfWidthMM: p.coreHalfWidthMM, from: 3, to: p.coreHalfWidthMM, side: -1), half: 1)
        let rightProfile = Profile.smooth(coreProfile(map, bone: bone, axis: axis, halfWidthMM: p.coreHalfWidthMM, from: 3, to: p.coreHalfWidthMM, side: 1), half: 1)
        let halfCentre = (3 + p.coreHalfWidthMM) / 2
        return chosen.compactMap { c in
            guard let y = dipCentre(profile, near: c.row, map: map, reach: reach) else { return nil }
            var slope = 0.0
            if let yl = dipCentre(leftProfile, near: c.row, map: map, reach: reach),
               let yr = dipCentre(rightProfile, near: c.row, map: map, reach: reach) {
                slope = max(-0.5, min(0.5, (yr - yl) / (2 * halfCentre)))
            }
            let r = max(0, min(map.rows - 1, map.row(atY: y)))
            return DiscLine(xMM: axis[r], yMM: y, slope: slope)
        }
    }

    /// The middle of a dip: halfway between where the profile crosses half its depth on
    /// either side of the minimum near `row` (interpolated), in mm on the table.
    static func dipCentre(_ profile: [Double], near row: Int, map: BoneMap, reach: Int) -> Double? {
        let lo = max(0, row - map.rows(6)), hi = min(profile.count - 1, row + map.rows(6))
        guard lo <= hi, let floorRow = (lo...hi).filter({ profile[$0].isFinite }).min(by: { profile[$0] < profile[$1] }) else { return nil }
        let floor = profile[floorRow]
        let above = (max(0, floorRow - reach)..<floorRow).compactMap { profile[$0].isFinite ? profile[$0] : nil }.max() ?? 0
        let below = ((floorRow + 1)..<min(profile.count, floorRow + reach + 1)).compactMap { profile[$0].isFinite ? profile[$0] : nil }.max() ?? 0
        let plateau = min(above, below)
        guard plateau > floor else { return nil }
        let half = (floor + plateau) / 2
        var a = Double(floorRow), b = Double(floorRow)
        var r = floorRow
        while r > 0 && (profile[r - 1].isNaN || profile[r - 1] < half) { r -= 1 }
        if r > 0, profile[r - 1].isFinite, profile[r].isFinite, profile[r - 1] != profile[r] {
            a = Double(r) - (half - profile[r]) / (profile[r - 1] - profile[r])
        } else { a = Double(r) }
        r = floorRow
        while r < profile.count - 1 && (profile[r + 1].isNaN || profile[r + 1] < half) { r += 1 }
        if r < profile.count - 1, profile[r + 1].isFinite, profile[r].isFinite, profile[r + 1] != profile[r] {
            b = Double(r) + (half - profile[r]) / (profile[r + 1] - profile[r])
        } else { b = Double(r) }
        return map.y0 + (a + b) / 2 * map.dy
    }

    // MARK: - Levels

    struct Level {
        var name = ""
        var upper: DiscLine
        var lower: DiscLine
        var leftExtent: Double
        var rightExtent: Double
        var height: Double
        var bmc: Double
        var area: Double
        var centreX: Double
        var centreY: Double
        var abnormality: String?
        var missingLines: Int
        /// The soft tissue over the level's bone pixels: sum (g/cm²) and count.
        var softTissueSum = 0.0
        var softTissuePixels = 0

        var measure: VertebraMeasure {
            VertebraMeasure(name: name, bmdGCm2: area > 0 ? bmc / area : nil, bmcG: bmc, areaCm2: area, heightMM: height, upper: upper, lower: lower,
                            leftXMM: centreX - leftExtent, rightXMM: centreX + rightExtent, centreXMM: centreX, centreYMM: centreY,
                            abnormality: abnormality, missingLines: missingLines)
        }
    }

    static func measureLevel(_ map: BoneMap, bone: Mask, axis: [Double], core: [Double], upper: DiscLine, lower: DiscLine,
                             _ p: Parameters) -> Level {
        let rUp = max(0, map.row(atY: upper.yMM)), rDown = min(map.rows - 1, map.row(atY: lower.yMM))
        // The body's sides from its middle rows: walk out from the axis along bone (gaps of up
        // to 2 mm are holes in it), at most 45 mm.
        var lefts: [Double] = [], rights: [Double] = []
        let span = rDown - rUp
        let gap = map.columns(2)
        if span > 4 {
            for r in (rUp + span / 5)...(rDown - span / 5) where map.rowPresent[r] {
                let a = map.column(atX: axis[r])
                for side in [-1, 1] {
                    var c = a, lastBone = a, misses = 0
                    while c >= 0 && c < map.columns && abs(map.x(c) - axis[r]) <= 45 {
                        if bone[r, c] { lastBone = c; misses = 0 } else { misses += 1; if misses > gap { break } }
                        c += side
                    }
                    let extent = abs(map.x(lastBone) - axis[r]) + map.dx / 2
                    if side < 0 { lefts.append(extent) } else { rights.append(extent) }
                }
            }
        }
        let left = lefts.isEmpty ? 20 : Profile.median(lefts), right = rights.isEmpty ? 20 : Profile.median(rights)
        var bmc = 0.0, pixels = 0, metal = 0, saturated = 0, inROI = 0, dense: [Int: Int] = [-1: 0, 1: 0]
        var missing = 0
        var softSum = 0.0, softPixels = 0
        let top = max(0, map.row(atY: min(upper.y(atX: axis[rUp] - left - 20), upper.y(atX: axis[rUp] + right + 20))) - 1)
        let bottom = min(map.rows - 1, map.row(atY: max(lower.y(atX: axis[rDown] - left - 20), lower.y(atX: axis[rDown] + right + 20))) + 1)
        if top <= bottom {
            for r in top...bottom {
                let y = map.y(r)
                var rowInROI = false
                for c in 0..<map.columns {
                    let x = map.x(c), d = x - axis[r]
                    guard y >= upper.y(atX: x), y < lower.y(atX: x) else { continue }
                    let inside = d >= -(left + p.roiMarginMM) && d <= right + p.roiMarginMM
                    if inside { rowInROI = true }
                    guard map.rowPresent[r] else { continue }
                    let v = Double(map[r, c])
                    if inside { inROI += 1 }
                    if inside && map.saturated[r * map.columns + c] { saturated += 1; continue }
                    if inside && (map.opaque[r * map.columns + c] || (v.isFinite && v >= p.metalGCm2)) { metal += 1; continue }
                    if inside && bone[r, c] {
                        bmc += v; pixels += 1
                        let s = Double(map.softTissue[r * map.columns + c])
                        if s.isFinite { softSum += s; softPixels += 1 }
                    }
                    // Dense bone beyond the body's side (within 15 mm of it).
                    let beyond = d < 0 ? -d - left : d - right
                    if beyond > p.osteophyteBeyondMM && beyond <= 15 && v.isFinite && v >= p.osteophyteDensityGCm2 {
                        dense[d < 0 ? -1 : 1, default: 0] += 1
                    }
                }
                if rowInROI && !map.rowPresent[r] { missing += 1 }
            }
        }
        // The body's height: the rows on the axis between the lines whose core bone reaches
        // half the level's middle.
        var height = 0.0
        if rDown > rUp + 2 {
            let middle = Profile.median(((rUp + span / 4)...(rDown - span / 4)).map { core[$0] })
            for r in rUp...rDown where core[r].isFinite && core[r] >= 0.5 * middle { height += map.dy }
        }
        let pixelArea = map.pixelAreaCm2
        var abnormality: String?
        let metalArea = Double(metal) * map.dx * map.dy
        let centreRow = max(0, min(map.rows - 1, (rUp + rDown) / 2))
        let fieldLeft = map.x(0) - map.dx / 2, fieldRight = map.x(map.columns - 1) + map.dx / 2
        if axis[centreRow] - left - p.roiMarginMM < fieldLeft || axis[centreRow] + right + p.roiMarginMM > fieldRight {
            abnormality = "the vertebra runs off the side of the field (centre the patient and rescan)"
        } else if inROI > 0 && Double(saturated) > p.saturatedShare * Double(inROI) {
            abnormality = "\(Int((Double(saturated) / Double(inROI) * 100).rounded())) % of its ROI saturated: the soft tissue beside the bone is not measured (rescan in a thinner mode)"
        } else if metalArea >= p.metalAreaMM2 {
            abnormality = "metal or a dense artefact in the ROI (\(Int(metalArea.rounded())) mm²)"
        } else {
            let sides = dense.sorted(by: { $0.key < $1.key }).compactMap { side, count -> String? in
                let area = Double(count) * map.dx * map.dy
                return area >= p.osteophyteAreaMM2 ? "\(Int(area.rounded())) mm² of dense bone beyond the body's \(side < 0 ? "right" : "left") side" : nil
            }
            if !sides.isEmpty { abnormality = "osteophyte: " + sides.joined(separator: " and ") }
        }
        return Level(upper: upper, lower: lower, leftExtent: left, rightExtent: right, height: height,
                     bmc: bmc * pixelArea, area: Double(pixels) * pixelArea, centreX: axis[centreRow], centreY: (upper.yMM + lower.yMM) / 2,
                     abnormality: abnormality, missingLines: missing, softTissueSum: softSum, softTissuePixels: softPixels)
    }

    // MARK: - Landmarks

    struct Landmarks {
        /// The highest point of the iliac crests in the field.
        var crestY: Double?
        /// Where the lowest ribs leave the spine (their y at the spine's side).
        var lowestRibY: Double?
    }

    /// Bone beside the spine: the ilia below (large, entering from the field's sides) and the
    /// ribs above (long, leaving the spine's sides).
    static func findLandmarks(_ map: BoneMap, bone: Mask, axis: [Double], sides: (left: Double, right: Double),
                              discs: [DiscLine], _ p: Parameters) -> Landmarks {
        let left = sides.left.isFinite ? sides.left : 20, right = sides.right.isFinite ? sides.right : 20
        let lateral = Mask(columns: map.columns, rows: map.rows) { r, c in
            guard bone[r, c] else { return false }
            let d = map.x(c) - axis[r]
            return d < 0 ? -d > left + 4 : d > right + 4
        }
        guard let firstDisc = discs.first, let lastDisc = discs.last else { return Landmarks() }
        let middle = (firstDisc.yMM + lastDisc.yMM) / 2
        var crestTops: [Double] = [], ribs: [Double] = []
        for component in lateral.components(minimum: max(4, Int(25 / (map.dx * map.dy)))) {
            var top = Double.infinity, sumY = 0.0
            var nearest = Double.infinity, farthest = 0.0, nearestY: [Double] = []
            var touchesEdge = false
            for (r, c) in component {
                let y = map.y(r)
                let d = map.x(c) - axis[r]
                let beyond = d < 0 ? -d - left : d - right
                top = min(top, y); sumY += y
                farthest = max(farthest, beyond)
                if beyond < nearest - 0.5 { nearest = beyond; nearestY = [y] } else if abs(beyond - nearest) <= 0.5 { nearestY.append(y) }
                if c == 0 || c == map.columns - 1 { touchesEdge = true }
            }
            let centroid = sumY / Double(component.count)
            let span = farthest - nearest
            if centroid > middle && (touchesEdge || span >= 15) {
                crestTops.append(top)
            } else if centroid < middle && span >= 15 && nearest <= 8 {
                ribs.append(nearestY.reduce(0, +) / Double(nearestY.count))
            }
        }
        return Landmarks(crestY: crestTops.min(), lowestRibY: ribs.max())
    }

    // MARK: - Helpers

    /// Least-squares line x = intercept + slope · y.
    static func fitLine(_ ys: [Double], _ xs: [Double]) -> (slope: Double, intercept: Double) {
        let n = Double(ys.count)
        let my = ys.reduce(0, +) / n, mx = xs.reduce(0, +) / n
        var sxy = 0.0, syy = 0.0
        for (y, x) in zip(ys, xs) { sxy += (y - my) * (x - mx); syy += (y - my) * (y - my) }
        let slope = syy > 0 ? sxy / syy : 0
        return (slope, mx - slope * my)
    }
}
