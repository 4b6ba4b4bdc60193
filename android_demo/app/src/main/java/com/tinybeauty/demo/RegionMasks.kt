package com.tinybeauty.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Paint
import android.graphics.Path
import org.json.JSONObject
import kotlin.math.exp
import kotlin.math.max
import kotlin.math.min
import java.util.Arrays

/**
 * The crop's soft region masks, `makeup/gate.py` `soft_region_masks`: the crop's label map from its own
 * face-mesh landmarks with the card's `"regions"` polygons (`makeup/parsing.py` `landmarks_to_labels`), then one
 * mask per [REGIONS] entry (`makeup/metrics.py` `region_masks`: eyes = the eye zone, the eye opening grown by
 * `eye_reach` of the side; lips; skin outside the eye zone; brows), each blurred like
 * `cv2.GaussianBlur(m, (0, 0), sigma, borderType=BORDER_CONSTANT)` with `sigma = feather * size / 2`.
 *
 * One computation for two users, once per frame ([compute]): [LookGate] fades its limits with [masks], and a
 * region-input model ([MakeupModel.regionInput]) reads them as its input channels from 3 on ([inOrder]: the
 * card's `io.region_input.channels` order), with the cheeks after them when the card gives their shape
 * (`makeup/gate.py` `input_masks`: [cheekShape], the card's `io.region_input.cheeks`). The web demo's
 * `src/gate.js` `softRegionMasks` does the same.
 *
 * The polygons are filled with android.graphics (no anti-aliasing), not cv2.fillPoly's rasteriser: the
 * label map can differ from Python's by a pixel along polygon edges, which the feather smooths over.
 * Not thread-safe: use it on the camera analysis thread. Buffers are allocated once per crop size.
 */
class RegionMasks private constructor(
    private val fill: List<Pair<Int, IntArray>>,   // (label value, landmark indices) in fill order
    private val labelOf: Map<String, Int>,
    private val eyeReach: Double,
    /** Soft edge, a fraction of the crop side (`feather` of `soft_region_masks`; 0: the hard masks). */
    val feather: Double,
    val size: Int,
    /** Where the cheeks are (the card's `io.region_input.cheeks`); null: no cheek mask (a 4-mask model's card). */
    private val cheekShape: CheekShape?,
) {
    private val n = size

    /** The label map of the last [compute] (the card's `"regions"` label values). */
    val labels = IntArray(n * n)

    /** One `size * size` mask in [0, 1] per [INPUT_MASKS] entry ([REGIONS] first), as of the last [compute]. */
    val masks: Array<FloatArray> = Array(INPUT_MASKS.size) { FloatArray(n * n) }

    /** The [REGIONS] masks before the blur (0 or 1): the look gate holds a region's whole range on its own pixels. */
    val hard: Array<FloatArray> = Array(REGIONS.size) { FloatArray(n * n) }

    private val labelBitmap = Bitmap.createBitmap(n, n, Bitmap.Config.ARGB_8888)
    private val canvas = Canvas(labelBitmap)
    private val paint = Paint().apply { isAntiAlias = false; style = Paint.Style.FILL }
    private val path = Path()
    private val zone = FloatArray(n * n)
    private val tmp = FloatArray(n * n)
    private val cheekColumns = DoubleArray(n)

    // cv2.GaussianBlur(ksize (0, 0), sigma) on a float image: ksize = round(sigma * 8 + 1) | 1.
    private val sigma = max(feather * n / 2.0, 1e-3)
    private val kernel: FloatArray = run {
        val k = (Math.rint(sigma * 8.0 + 1.0).toInt()) or 1
        val taps = DoubleArray(k) { i -> val x = i - (k - 1) * 0.5; exp(-0.5 * x * x / (sigma * sigma)) }
        val total = taps.sum()
        FloatArray(k) { i -> (taps[i] / total).toFloat() }
    }

    /** The masks of the crop whose 478 face-mesh points (crop pixels, `[x0, y0, x1, y1, ...]`) are [landmarks]. */
    fun compute(landmarks: DoubleArray) {
        rasterise(landmarks)
        eyeZone(labelOf.getValue("eyes"), Math.rint(eyeReach * n).toInt(), zone)
        val skin = labelOf.getValue("skin")
        for ((r, name) in REGIONS.withIndex()) {
            val m = masks[r]
            when (name) {
                "eyes" -> zone.copyInto(m)
                "skin" -> for (i in m.indices) m[i] = if (labels[i] == skin && zone[i] == 0f) 1f else 0f
                else -> {
                    val v = labelOf.getValue(name)
                    for (i in m.indices) m[i] = if (labels[i] == v) 1f else 0f
                }
            }
            m.copyInto(hard[r])
            if (feather > 0) blur(m)
        }
        val shape = cheekShape
        if (shape != null) cheeks(shape, masks[REGIONS.indexOf("skin")], masks[INPUT_MASKS.indexOf("cheeks")])
    }

    /**
     * `makeup/metrics.py` `cheek_map` times the soft skin mask into [out]: the eye pixels split at the lips' mean
     * column; per eye with at least `minPixels` pixels (width w = its column span + 1), a Gaussian centred
     * `outward` w away from the lips' column and `drop` of the way from the eye's mean row to the lips', spread
     * (`spreadX` w, `spreadY` w), the max of the two; zeros without lips. Float64 as numpy, one cast to float.
     */
    private fun cheeks(shape: CheekShape, skinSoft: FloatArray, out: FloatArray) {
        Arrays.fill(out, 0f)
        val eyes = labelOf.getValue("eyes")
        val lips = labelOf.getValue("lips")
        var lipCount = 0
        var lipX = 0.0
        var lipY = 0.0
        for (i in labels.indices) {
            if (labels[i] == lips) { lipCount++; lipX += (i % n).toDouble(); lipY += (i / n).toDouble() }
        }
        if (lipCount < shape.minPixels) return
        val mid = lipX / lipCount
        val lipsY = lipY / lipCount
        for (outward in doubleArrayOf(-1.0, 1.0)) {
            var count = 0
            var sumX = 0.0
            var sumY = 0.0
            var x0 = n
            var x1 = -1
            for (i in labels.indices) {
                if (labels[i] != eyes) continue
                val x = i % n
                if ((x < mid) != (outward < 0)) continue  // left eye: columns < mid; right eye: >= mid
                count++
                sumX += x.toDouble()
                sumY += (i / n).toDouble()
                x0 = min(x0, x)
                x1 = max(x1, x)
            }
            if (count < shape.minPixels) continue
            val width = (x1 - x0 + 1).toDouble()
            val eyeX = sumX / count
            val eyeY = sumY / count
            val cx = eyeX + outward * shape.outward * width
            val cy = eyeY + shape.drop * (lipsY - eyeY)
            for (x in 0 until n) {
                val d = (x - cx) / (shape.spreadX * width)
                cheekColumns[x] = exp(-shape.falloff * d * d)
            }
            for (y in 0 until n) {
                val d = (y - cy) / (shape.spreadY * width)
                val gy = exp(-shape.falloff * d * d)
                for (x in 0 until n) {
                    val v = (gy * cheekColumns[x]).toFloat()
                    if (v > out[y * n + x]) out[y * n + x] = v
                }
            }
        }
        for (i in out.indices) out[i] *= skinSoft[i]
    }

    /** [masks] in the order of [names] (names of [INPUT_MASKS]): the same arrays, so [compute] updates them. */
    fun inOrder(names: List<String>): Array<FloatArray> = Array(names.size) { k ->
        val r = INPUT_MASKS.indexOf(names[k])
        require(r >= 0) { "unknown region ${names[k]} (known: ${INPUT_MASKS.joinToString()})" }
        require(names[k] != "cheeks" || cheekShape != null) { "the cheeks need the card's io.region_input.cheeks" }
        masks[r]
    }

    /** `landmarks_to_labels`: the card's polygons in order, later ones over earlier ones. */
    private fun rasterise(landmarks: DoubleArray) {
        labelBitmap.eraseColor(0)
        for ((value, ids) in fill) {
            path.rewind()
            for ((k, id) in ids.withIndex()) {
                val x = landmarks[2 * id].toFloat() + 0.5f   // pixel centres at integers, as in Python
                val y = landmarks[2 * id + 1].toFloat() + 0.5f
                if (k == 0) path.moveTo(x, y) else path.lineTo(x, y)
            }
            path.close()
            paint.color = ALPHA_MASK or value
            canvas.drawPath(path, paint)
        }
        labelBitmap.getPixels(labels, 0, n, 0, 0, n, n)
        for (i in labels.indices) labels[i] = labels[i] and 0xFF
    }

    /** `eye_zone`: the eye opening grown by [reach] px (square max filter) as 0/1 into [out]. */
    private fun eyeZone(eyes: Int, reach: Int, out: FloatArray) {
        for (y in 0 until n) {
            for (x in 0 until n) {
                var hit = 0f
                for (j in max(x - reach, 0)..min(x + reach, n - 1)) if (labels[y * n + j] == eyes) { hit = 1f; break }
                tmp[y * n + x] = hit
            }
        }
        for (x in 0 until n) {
            for (y in 0 until n) {
                var hit = 0f
                for (j in max(y - reach, 0)..min(y + reach, n - 1)) if (tmp[j * n + x] != 0f) { hit = 1f; break }
                out[y * n + x] = hit
            }
        }
    }

    /** cv2.GaussianBlur(m, (0, 0), sigma, borderType=BORDER_CONSTANT), in place. */
    private fun blur(m: FloatArray) {
        val r = kernel.size / 2
        for (y in 0 until n) {
            for (x in 0 until n) {
                var acc = 0f
                for (j in max(-r, -x)..min(r, n - 1 - x)) acc += kernel[j + r] * m[y * n + x + j]
                tmp[y * n + x] = acc
            }
        }
        for (y in 0 until n) {
            for (x in 0 until n) {
                var acc = 0f
                for (j in max(-r, -y)..min(r, n - 1 - y)) acc += kernel[j + r] * tmp[(y + j) * n + x]
                m[y * n + x] = acc
            }
        }
    }

    companion object {
        private const val ALPHA_MASK = -0x1000000  // 0xFF000000

        /** makeup.metrics.FIDELITY_REGIONS: the masks' order, the regions the gate's ranges are given for. */
        val REGIONS = arrayOf("eyes", "lips", "skin", "brows")

        /** makeup.gate.INPUT_MASKS: what a region-input model can read after RGB, [REGIONS] then the cheeks. */
        val INPUT_MASKS = REGIONS + "cheeks"

        /** The card's `"regions"` (polygons in fill order, label values, eye zone reach), masks at [feather];
         *  the cheeks too when the card's `io.region_input` has their shape. */
        fun fromModelCard(json: String, size: Int, feather: Double): RegionMasks {
            val card = JSONObject(json)
            val regions = card.getJSONObject("regions")
            val names = regions.getJSONObject("labels")
            val labelOf = names.keys().asSequence().associateWith { names.getInt(it) }
            val parts = regions.getJSONArray("fill")
            val fill = List(parts.length()) { i ->
                val part = parts.getJSONObject(i)
                val ids = part.getJSONArray("points")
                labelOf.getValue(part.getString("label")) to IntArray(ids.length()) { ids.getInt(it) }
            }
            for (name in REGIONS) require(name in labelOf) { "regions.labels has no \"$name\"" }
            val ri = card.optJSONObject("io")?.optJSONObject("region_input")
            val cheeks = ri?.optJSONObject("cheeks")?.let { CheekShape.fromJson(it) }
            return RegionMasks(fill, labelOf, regions.getDouble("eye_reach"), feather, size, cheeks)
        }

        /** From assets/model_card.json; throws with the reason when the card has no usable `"regions"`. */
        fun load(context: Context, size: Int, feather: Double): RegionMasks =
            fromModelCard(readModelCard(context), size, feather)

        fun readModelCard(context: Context): String =
            context.assets.open(Alignment.MODEL_CARD_ASSET).bufferedReader().use { it.readText() }
    }
}

/** The card's `io.region_input.cheeks` (`export/report.py` `io_card`, `makeup/metrics.py` CHEEK_*): the cheek map. */
class CheekShape(
    val outward: Double,
    val drop: Double,
    val spreadX: Double,
    val spreadY: Double,
    val falloff: Double,
    val minPixels: Int,
) {
    companion object {
        fun fromJson(o: JSONObject): CheekShape {
            val spread = o.getJSONArray("spread")
            return CheekShape(o.getDouble("outward"), o.getDouble("drop"), spread.getDouble(0), spread.getDouble(1),
                o.getDouble("falloff"), o.getInt("min_pixels"))
        }
    }
}

/**
 * What a region-input model reads from the card's `io.region_input` (`export/report.py` `io_card`): the region
 * masks' names in input-channel order, after the [MakeupModel.CHANNELS] colour channels, and their feather.
 */
class RegionInput(val channels: List<String>, val feather: Double) {
    companion object {
        /** Null when the card's `"io"` has no `region_input` (an RGB-only model's card); throws when malformed. */
        fun fromModelCard(json: String): RegionInput? {
            val io = JSONObject(json).getJSONObject("io")
            if (!io.has("region_input") || io.isNull("region_input")) return null
            val ri = io.getJSONObject("region_input")
            val names = ri.getJSONArray("channels")
            val channels = List(names.length()) { names.getString(it) }
            // The 4 region masks (any order), then optionally the cheeks: RegionMasks.INPUT_MASKS' first 4 or 5.
            val known = RegionMasks.INPUT_MASKS.take(channels.size).toSet()
            require(channels.size in MakeupModel.REGION_CHANNELS..MakeupModel.REGION_CHANNELS + MakeupModel.CHEEK_CHANNELS &&
                channels.toSet() == known) {
                "io.region_input.channels $channels: expected the masks of ${RegionMasks.REGIONS.joinToString()} (and cheeks)"
            }
            require("cheeks" !in channels || ri.has("cheeks")) { "io.region_input has the cheeks but not their shape" }
            val first = ri.getInt("first_channel")
            require(first == MakeupModel.CHANNELS) {
                "io.region_input.first_channel $first: the app packs the masks after the ${MakeupModel.CHANNELS} colour channels"
            }
            return RegionInput(channels, ri.getDouble("feather"))
        }

        /** From assets/model_card.json; a region-input model cannot run without it, so this throws with the reason. */
        fun load(context: Context): RegionInput = fromModelCard(RegionMasks.readModelCard(context))
            ?: throw IllegalStateException(
                "${MakeupModel.MODEL_ASSET} takes the face's region masks and ${Alignment.MODEL_CARD_ASSET} has no " +
                    "io.region_input: copy the model's own card (make android-assets)"
            )
    }
}
